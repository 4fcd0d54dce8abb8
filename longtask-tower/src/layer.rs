//! [`JobLayer`]: the job endpoints as middleware in front of any other service.
//!
//! Requests whose path is the layer's prefix or lies under it go to the job's
//! [`JobService`]; every other request goes to the wrapped service untouched.
//!
//! ```
//! use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
//! use longtask_tower::JobLayer;
//! use tower::Layer;
//!
//! struct Report;
//! impl Job for Report {
//!     const NAME: &'static str = "report";
//!     type Params = u32;
//!     type Output = u32;
//!     async fn run(&self, p: u32, _: TaskContext) -> Result<u32, JobError> { Ok(p) }
//! }
//!
//! let layer = JobLayer::<Report>::new("/reports", Client::new(MemoryBackend::new()));
//! let app = layer.layer(tower::service_fn(|_req: http::Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("the rest of the app")))
//! }));
//! ```

use std::{
    fmt,
    task::{Context, Poll},
};

use http::{Request, Response};
use http_body::Body;
use http_body_util::Either;
use longtask_core::{BoxError, Client, Job};
use tower::{Layer, Service};

use crate::{body::ResponseBody, future::MiddlewareFuture, service::JobService};

/// Puts the endpoints of job `J` under a path prefix in front of any service: requests whose
/// path is the prefix or lies under it are answered by the job's [`JobService`]; every other
/// request goes to the wrapped service untouched.
pub struct JobLayer<J: Job> {
    service: JobService<J>,
}

impl<J: Job> JobLayer<J> {
    /// The endpoints of job `J` under `prefix` (`"/reports"`), submitting through `client`.
    ///
    /// ```
    /// # use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
    /// # struct Report;
    /// # impl Job for Report {
    /// #     const NAME: &'static str = "report";
    /// #     type Params = u32;
    /// #     type Output = u32;
    /// #     async fn run(&self, p: u32, _: TaskContext) -> Result<u32, JobError> { Ok(p) }
    /// # }
    /// let layer = longtask_tower::JobLayer::<Report>::new("/reports", Client::new(MemoryBackend::new()));
    /// ```
    pub fn new(prefix: impl AsRef<str>, client: Client) -> Self {
        Self {
            service: JobService::new(client).at(prefix),
        }
    }

    /// A layer over a configured service, under the service's [`at`](JobService::at) path.
    ///
    /// ```
    /// # use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
    /// # struct Report;
    /// # impl Job for Report {
    /// #     const NAME: &'static str = "report";
    /// #     type Params = u32;
    /// #     type Output = u32;
    /// #     async fn run(&self, p: u32, _: TaskContext) -> Result<u32, JobError> { Ok(p) }
    /// # }
    /// use longtask_tower::{JobLayer, JobService};
    /// let service = JobService::<Report>::new(Client::new(MemoryBackend::new()))
    ///     .at("/reports")
    ///     .with_title("Monthly report");
    /// let layer = JobLayer::from_service(service);
    /// ```
    pub fn from_service(service: JobService<J>) -> Self {
        Self { service }
    }
}

impl<J: Job> Clone for JobLayer<J> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
        }
    }
}

impl<J: Job> fmt::Debug for JobLayer<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobLayer")
            .field("service", &self.service)
            .finish()
    }
}

impl<J: Job, S> Layer<S> for JobLayer<J> {
    type Service = JobMiddleware<J, S>;

    fn layer(&self, inner: S) -> Self::Service {
        JobMiddleware {
            jobs: self.service.clone(),
            inner,
        }
    }
}

/// The service [`JobLayer`] makes: the job endpoints under the prefix, `S` everywhere else.
pub struct JobMiddleware<J: Job, S> {
    jobs: JobService<J>,
    inner: S,
}

impl<J: Job, S: Clone> Clone for JobMiddleware<J, S> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<J: Job, S: fmt::Debug> fmt::Debug for JobMiddleware<J, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobMiddleware")
            .field("jobs", &self.jobs)
            .field("inner", &self.inner)
            .finish()
    }
}

fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

impl<J, S, B, ResBody> Service<Request<B>> for JobMiddleware<J, S>
where
    J: Job,
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Either<ResponseBody, ResBody>>;
    type Error = S::Error;
    type Future = MiddlewareFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if under(req.uri().path(), self.jobs.base()) {
            MiddlewareFuture::Job {
                future: self.jobs.call(req),
            }
        } else {
            MiddlewareFuture::Inner {
                future: self.inner.call(req),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn prefix_matches_whole_segments() {
        assert!(under("/reports", "/reports"));
        assert!(under("/reports/", "/reports"));
        assert!(under("/reports/abc", "/reports"));
        assert!(!under("/reportsx", "/reports"));
        assert!(!under("/", "/reports"));
    }
}
