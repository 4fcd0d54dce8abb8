//! [`serve`]: the HTTP/1.1 server of `longtask dashboard`, with a timeout for slow clients and a
//! graceful stop that does not wait forever for open event streams.

use std::{convert::Infallible, future::Future, time::Duration};

use http::{Request, Response};
use hyper::{body::Incoming, server::conn::http1, service::Service};
use hyper_util::rt::{TokioIo, TokioTimer};
use longtask::http::ResponseBody;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

/// How long a client has to send a request's head (and how long an idle keep-alive
/// connection stays open).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the requests in flight get to finish once the server stops. The overview's live
/// updates are a stream that ends only when its browser leaves, so the stop cannot wait for
/// every answer to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Serves `service` on `listener` until `stop` completes; then stops accepting, lets the
/// requests in flight finish for up to [`SHUTDOWN_GRACE`], and closes every connection.
pub(crate) async fn serve<S>(listener: TcpListener, service: S, stop: impl Future<Output = ()>)
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let (stopping_tx, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service.clone());
                    let mut stopping = stopping.clone();
                    connections.spawn(async move {
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => return,
                            _ = stopping.changed() => conn.as_mut().graceful_shutdown(),
                        }
                        let _ = conn.await;
                    });
                }
                // Out of file descriptors, say: say so, and try again shortly.
                Err(err) => {
                    eprintln!("warning: accepting a connection failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        connections.shutdown().await;
    }
}

/// A future that completes at Ctrl-C (SIGINT) or, on Unix, SIGTERM. The handlers are in place
/// when this returns, so that a signal sent as soon as the server says it is ready stops it
/// gracefully rather than killing it.
pub(crate) fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
