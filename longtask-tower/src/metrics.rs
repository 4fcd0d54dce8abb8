//! [`Prometheus`]: a ready Prometheus exposition of longtask's metrics (feature `prometheus`).
//!
//! Workers and clients record through the `metrics` facade (every metric is listed in
//! [`longtask_core::metrics`]). [`Prometheus::install`] installs a Prometheus recorder for the
//! whole process, with histogram buckets that suit task wait and run times, and
//! [`Prometheus::service`] serves its exposition (`text/plain; version=0.0.4`) to a scraper, as a
//! [`tower::Service`] to mount at `/metrics`. Metrics of your own, recorded through the same
//! facade, come out with them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use longtask_core::{metrics::poll_stats, Client, MemoryBackend};
//! use longtask_tower::Prometheus;
//!
//! // First, before building clients and workers: their handles go to the recorder installed then.
//! let prometheus = Prometheus::install()?;
//! let client = Client::new(MemoryBackend::new());
//! // The queue gauges (tasks per job and status, oldest due task), read from the backend.
//! tokio::spawn(poll_stats(client.clone(), Duration::from_secs(15), std::future::pending()));
//! // axum: Router::new().route_service("/metrics", prometheus.service())
//! let service = prometheus.service();
//! # Ok(()) }
//! ```

use std::{
    convert::Infallible,
    fmt,
    future::{ready, Ready},
    task::{Context, Poll},
    time::Duration,
};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::Matcher;
pub use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

use crate::{body::ResponseBody, problem::Problem};

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often [`Prometheus::install`]'s background task does the recorder's upkeep.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A Prometheus recorder's handle: renders the exposition, and serves it with
/// [`service`](Self::service). Cheap to clone.
#[derive(Clone)]
pub struct Prometheus {
    handle: PrometheusHandle,
}

impl fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prometheus").finish_non_exhaustive()
    }
}

impl Prometheus {
    /// A [`PrometheusBuilder`] set up for longtask: `longtask_wait_seconds` and
    /// `longtask_run_seconds` are histograms with [`SECONDS_BUCKETS`] (instead of the builder's
    /// default summaries, which Prometheus cannot aggregate across processes). Add your own
    /// settings, then install it and pass the handle to [`from_handle`](Self::from_handle).
    ///
    /// ```
    /// let builder = longtask_tower::Prometheus::builder().add_global_label("service", "reports");
    /// ```
    ///
    /// [`SECONDS_BUCKETS`]: longtask_core::metrics::SECONDS_BUCKETS
    pub fn builder() -> PrometheusBuilder {
        let mut builder = PrometheusBuilder::new();
        for name in [
            longtask_core::metrics::WAIT_SECONDS,
            longtask_core::metrics::RUN_SECONDS,
        ] {
            let matcher = Matcher::Full(name.to_owned());
            builder = match builder
                .set_buckets_for_metric(matcher, &longtask_core::metrics::SECONDS_BUCKETS)
            {
                Ok(builder) => builder,
                Err(_) => unreachable!("it only refuses an empty list of buckets"),
            };
        }
        builder
    }

    /// Installs a Prometheus recorder ([`builder`](Self::builder)) as the process's `metrics`
    /// recorder, and describes longtask's metrics in it. Call it once, early: before building
    /// clients and starting workers. Inside a tokio runtime it also spawns the recorder's upkeep
    /// (every 5 s), which keeps histogram samples bounded between scrapes; elsewhere, call
    /// [`PrometheusHandle::run_upkeep`] yourself now and then.
    ///
    /// # Errors
    /// A recorder is already installed in this process (by this function or another).
    pub fn install() -> Result<Self, BuildError> {
        let handle = Self::builder().install_recorder()?;
        Ok(Self::from_handle(handle))
    }

    /// Serves the exposition of a Prometheus recorder installed your own way (see
    /// [`builder`](Self::builder)); describes longtask's metrics in the installed recorder, and
    /// spawns the upkeep like [`install`](Self::install).
    pub fn from_handle(handle: PrometheusHandle) -> Self {
        longtask_core::metrics::describe();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let upkeep = handle.clone();
            runtime.spawn(async move {
                let mut every = tokio::time::interval(UPKEEP_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    upkeep.run_upkeep();
                }
            });
        }
        Self { handle }
    }

    /// The recorder's handle.
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }

    /// The exposition now, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// A [`tower::Service`] answering `GET` and `HEAD` with the exposition
    /// ([`CONTENT_TYPE`]), whatever the path: mount it where scrapers look
    /// (axum: `Router::route_service("/metrics", prometheus.service())`). Other methods get
    /// `405` problem+json. Mind who can reach it: the figures show your job names and volumes.
    pub fn service(&self) -> MetricsService {
        MetricsService {
            handle: self.handle.clone(),
        }
    }
}

/// Serves a Prometheus exposition; from [`Prometheus::service`].
#[derive(Clone)]
pub struct MetricsService {
    handle: PrometheusHandle,
}

impl fmt::Debug for MetricsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsService").finish_non_exhaustive()
    }
}

impl<B> tower::Service<Request<B>> for MetricsService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            return ready(Ok(
                Problem::method_not_allowed(method, "GET, HEAD").into_response()
            ));
        }
        let body = if method == Method::HEAD {
            ResponseBody::empty()
        } else {
            ResponseBody::full(self.handle.render())
        };
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        ready(Ok(response))
    }
}
