//! [`serve`]: the examples' HTTP server, HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on one
//! port, with the timeouts a server open to the internet needs.
//!
//! Neither hyper nor `axum::serve` times anything out by default: a client that sends its
//! request head a byte at a time ("slowloris"), or opens a connection and sends nothing, holds a
//! socket and a task for as long as it likes, and a few thousand of them exhaust the process.
//! Here:
//!
//! - the request head (request line and headers) must arrive within
//!   [`Timeouts::header_read`] (hyper's `header_read_timeout`, which hyper also starts again
//!   when an HTTP/1.1 connection goes idle after an answer, so it bounds idle keep-alives too);
//! - a connection with no request in flight for [`Timeouts::idle`] is closed, whatever its
//!   protocol and however far it got (hyper has no such limit for HTTP/2 connections, nor for
//!   connections that have not yet sent enough bytes to tell their protocol). A request is in
//!   flight from its head until the end of its answer, so a long event stream stays open;
//! - request bodies are the service's business: `JobService::with_body_timeout` answers `408`
//!   to a body that has not arrived in full within its time.
//!
//! ```no_run
//! # async fn demo(app: axum::Router) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! longtask_examples::serve(listener, app, longtask_examples::Timeouts::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

use std::{
    convert::Infallible,
    error::Error as StdError,
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use pin_project_lite::pin_project;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};

type BoxError = Box<dyn StdError + Send + Sync>;

/// How long [`serve`] waits for slow or silent clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a client has to send a request's head, from the moment the server waits for
    /// it; on HTTP/1.1 also how long a connection may sit idle between requests.
    /// Default 10 s.
    pub header_read: Duration,
    /// How long a connection may stay open with no request in flight (on any protocol, before
    /// its first request too). Default 30 s.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(30),
        }
    }
}

/// Serves `service` on `listener` (HTTP/1.1, and HTTP/2 for clients that open with its
/// preface) until `shutdown` completes; then stops accepting, lets the requests in flight
/// finish and returns once every connection has closed.
///
/// `service` is any clonable tower service of `http` requests, such as an `axum::Router` or a
/// `longtask_tower::JobService`.
///
/// # Errors
///
/// Never, today: a failed `accept` (out of file descriptors, say) is logged and retried.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    // Pings find peers that vanished while an answer (an event stream) is still open.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(
                        stream,
                        builder.clone(),
                        service.clone(),
                        timeouts,
                        stop_rx.clone(),
                    ));
                }
                Err(err) => {
                    eprintln!("accepting a connection failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serves one connection until it ends, it has had no request in flight for `timeouts.idle`,
/// or (gracefully) the server stops.
async fn connection<S, B>(
    stream: TcpStream,
    builder: auto::Builder<TokioExecutor>,
    service: S,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (count, mut in_flight) = watch::channel(0_usize);
    let service = TowerToHyperService::new(Counted {
        inner: service,
        in_flight: Arc::new(count),
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let idle = *in_flight.borrow_and_update() == 0;
        tokio::select! {
            _ = conn.as_mut() => return,
            Ok(()) = in_flight.changed() => {}
            // Dropping the connection closes the socket.
            () = tokio::time::sleep(timeouts.idle), if idle => return,
            Ok(()) = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Counts the requests of one connection from their head to the end of their answer.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    in_flight: Arc<watch::Sender<usize>>,
}

/// One request in flight, until dropped.
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn new(count: &Arc<watch::Sender<usize>>) -> Self {
        count.send_modify(|n| *n += 1);
        Self(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl<S, R, B> tower::Service<Request<R>> for Counted<S>
where
    S: tower::Service<Request<R>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<CountedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<R>) -> Self::Future {
        let guard = InFlight::new(&self.in_flight);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| CountedBody {
                body,
                _guard: guard,
            }))
        })
    }
}

pin_project! {
    /// An answer's body, holding its request in flight until it is dropped.
    struct CountedBody<B> {
        #[pin]
        body: B,
        _guard: InFlight,
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
