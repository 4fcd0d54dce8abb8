//! The futures the services return.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::Response;
use http_body_util::Either;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

/// The future of [`JobService`](crate::JobService): the answer to one request. It never fails.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>>,
}

impl ResponseFuture {
    pub(crate) fn new(
        inner: impl Future<Output = Response<ResponseBody>> + Send + 'static,
    ) -> Self {
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx).map(Ok)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// The future of [`JobMiddleware`](crate::JobMiddleware): the job endpoints' answer, or the
    /// wrapped service's.
    #[project = Proj]
    #[allow(missing_docs)] // pin-project-lite takes no docs on fields: `future` is the answer's future
    pub enum MiddlewareFuture<F> {
        /// A request under the prefix, answered by the job endpoints.
        Job {
            #[pin]
            future: ResponseFuture,
        },
        /// Any other request, answered by the wrapped service.
        Inner {
            #[pin]
            future: F,
        },
    }
}

impl<F, B, E> Future for MiddlewareFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<ResponseBody, B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Job { future } => future.poll(cx).map(|r| match r {
                Ok(response) => Ok(response.map(Either::Left)),
                Err(never) => match never {},
            }),
            Proj::Inner { future } => future.poll(cx).map(|r| r.map(|res| res.map(Either::Right))),
        }
    }
}

impl<F> fmt::Debug for MiddlewareFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Job { .. } => f.write_str("MiddlewareFuture::Job"),
            Self::Inner { .. } => f.write_str("MiddlewareFuture::Inner"),
        }
    }
}
