//! [`JobService`]: the HTTP endpoints of one job, as a `tower::Service`.
//!
//! ```
//! use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
//! use longtask_tower::{JobService, ResultFile};
//!
//! struct Export;
//! impl Job for Export {
//!     const NAME: &'static str = "export";
//!     type Params = String;
//!     type Output = String; // CSV text
//!     async fn run(&self, table: String, _cx: TaskContext) -> Result<String, JobError> {
//!         Ok(format!("table\n{table}\n"))
//!     }
//! }
//!
//! let service = JobService::<Export>::new(Client::new(MemoryBackend::new()))
//!     .at("/exports")
//!     .with_title("Table export")
//!     .with_body_limit(64 * 1024)
//!     .with_owner(|parts| {
//!         parts.headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned)
//!     })
//!     .with_result_file(|csv: &String| {
//!         ResultFile::new("text/csv; charset=utf-8", csv.clone()).filename("export.csv")
//!     });
//! ```

use std::{
    convert::Infallible,
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{header, request::Parts, HeaderValue, Request, Response};
use http_body::Body;
use longtask_core::{BoxError, Client, Job};
use tokio::sync::Semaphore;

use crate::{
    body::ResponseBody, future::ResponseFuture, layer::JobLayer, problem::Problem,
    render::ResultFile,
};

/// The default largest request body: 1 MiB.
const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// The default time a request body has to arrive in full: 30 s.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The default limit of open event streams.
pub(crate) const DEFAULT_MAX_WATCHERS: usize = 10_000;

type OwnerFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;
type FileFn<O> = Arc<dyn Fn(&O) -> ResultFile + Send + Sync>;
type HtmlFn<O> = Arc<dyn Fn(&O) -> String + Send + Sync>;

/// The HTTP endpoints of job `J`: submit, status (JSON or an HTML page), live events, result and
/// cancel, answering under the mount point it is given (see the [crate docs](crate) for the
/// routes). Cheap to clone.
///
/// Mount it in axum with `Router::nest_service("/reports", JobService::<Report>::new(client).at("/reports"))`,
/// serve it from plain hyper through `hyper_util::service::TowerToHyperService`, or wrap another
/// service with [`JobService::layer`]. It accepts request bodies of any
/// [`http_body::Body`] type, and never fails: every error is a problem document.
pub struct JobService<J: Job> {
    config: Arc<Config<J>>,
}

/// What a [`JobService`] was built with, shared by its clones; the routes read it.
pub(crate) struct Config<J: Job> {
    pub(crate) client: Client,
    /// The public mount path, percent-encoded (`""` for the root).
    pub(crate) base: String,
    pub(crate) title: String,
    pub(crate) body_limit: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) owner: Option<OwnerFn>,
    pub(crate) result_file: Option<FileFn<J::Output>>,
    pub(crate) result_html: Option<HtmlFn<J::Output>>,
    /// Permits for open event streams, shared by every clone of the service.
    pub(crate) watchers: Arc<Semaphore>,
    pub(crate) max_watchers: usize,
}

impl<J: Job> Clone for Config<J> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            base: self.base.clone(),
            title: self.title.clone(),
            body_limit: self.body_limit,
            body_timeout: self.body_timeout,
            owner: self.owner.clone(),
            result_file: self.result_file.clone(),
            result_html: self.result_html.clone(),
            watchers: Arc::clone(&self.watchers),
            max_watchers: self.max_watchers,
        }
    }
}

impl<J: Job> Clone for JobService<J> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
        }
    }
}

impl<J: Job> fmt::Debug for JobService<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobService")
            .field("job", &J::NAME)
            .field("base", &self.config.base)
            .field("body_limit", &self.config.body_limit)
            .field("body_timeout", &self.config.body_timeout)
            .field("max_watchers", &self.config.max_watchers)
            .finish_non_exhaustive()
    }
}

/// "monthly-report" → "Monthly report".
fn default_title(name: &str) -> String {
    let spaced = name.replace(['-', '_'], " ");
    let mut chars = spaced.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

impl<J: Job> JobService<J> {
    /// The endpoints of job `J`, submitting through `client`, mounted at the root (`/`) until
    /// [`at`](Self::at) says otherwise.
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
    /// let service = longtask_tower::JobService::<Report>::new(Client::new(MemoryBackend::new()));
    /// ```
    pub fn new(client: Client) -> Self {
        Self {
            config: Arc::new(Config {
                client,
                base: String::new(),
                title: default_title(J::NAME),
                body_limit: DEFAULT_BODY_LIMIT,
                body_timeout: DEFAULT_BODY_TIMEOUT,
                owner: None,
                result_file: None,
                result_html: None,
                watchers: Arc::new(Semaphore::new(DEFAULT_MAX_WATCHERS)),
                max_watchers: DEFAULT_MAX_WATCHERS,
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config<J> {
        Arc::make_mut(&mut self.config)
    }

    /// The public path the service is mounted at (`"/reports"`), used for the links in its
    /// answers. Requests may arrive with the path stripped of it (axum's `nest_service`) or
    /// whole (plain hyper, [`JobLayer`]); both work. Characters a URL path may not hold (spaces,
    /// non-ASCII) are percent-encoded, as browsers send them.
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
    /// let service = longtask_tower::JobService::<Report>::new(Client::new(MemoryBackend::new()))
    ///     .at("/reports");
    /// ```
    #[must_use]
    pub fn at(mut self, path: impl AsRef<str>) -> Self {
        let trimmed = path.as_ref().trim_matches('/');
        self.config_mut().base = if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{}", encode_path(trimmed))
        };
        self
    }

    /// The title of the status page (default: the job's name, "monthly-report" → "Monthly report").
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
    /// let service = longtask_tower::JobService::<Report>::new(Client::new(MemoryBackend::new()))
    ///     .with_title("Monthly invoice report");
    /// ```
    #[must_use]
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.config_mut().title = title.into();
        self
    }

    /// The largest request body accepted, in bytes (default 1 MiB); larger ones get `413`.
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
    /// let service = longtask_tower::JobService::<Report>::new(Client::new(MemoryBackend::new()))
    ///     .with_body_limit(16 * 1024);
    /// ```
    #[must_use]
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.config_mut().body_limit = bytes;
        self
    }

    /// How long a request body may take to arrive in full, from the moment the service starts
    /// reading it (default 30 s); a body still arriving then gets `408 Request Timeout`, and
    /// the connection is not reused. A client that sends its body a byte at a time (a "slow
    /// body") holds a connection and a task of the server for no longer than this.
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
    /// let service = longtask_tower::JobService::<Report>::new(Client::new(MemoryBackend::new()))
    ///     .with_body_timeout(std::time::Duration::from_secs(10));
    /// ```
    #[must_use]
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().body_timeout = timeout;
        self
    }

    /// How many live event streams (`GET /{id}/events`, the status page's live updates) may be
    /// open at once across all clones of this service; default 10,000. Each holds a
    /// subscription on the backend while it lasts. Past the limit, a stream request answers
    /// `503` with `Retry-After`, and the status page falls back to reloading itself every few
    /// seconds, as it does without JavaScript. `0` turns live streams off.
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
    /// let service = longtask_tower::JobService::<Report>::new(Client::new(MemoryBackend::new()))
    ///     .with_max_watchers(500);
    /// ```
    #[must_use]
    pub fn with_max_watchers(mut self, streams: usize) -> Self {
        let streams = streams.min(Semaphore::MAX_PERMITS);
        let config = self.config_mut();
        config.max_watchers = streams;
        config.watchers = Arc::new(Semaphore::new(streams));
        self
    }

    /// Who is asking: a function from the request (its head) to an owner (a user or tenant id).
    /// New tasks are stamped with it, and a task whose owner differs from the requester's
    /// answers `404` on every route, as if it did not exist. Idempotency keys are scoped to the
    /// owner. Without this hook, anyone holding a task's (unguessable) id may see it.
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
    /// let service = longtask_tower::JobService::<Report>::new(Client::new(MemoryBackend::new()))
    ///     .with_owner(|parts| {
    ///         // e.g. set by your authentication middleware
    ///         parts.headers.get("x-user-id")?.to_str().ok().map(str::to_owned)
    ///     });
    /// ```
    #[must_use]
    pub fn with_owner<F>(mut self, owner: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.config_mut().owner = Some(Arc::new(owner));
        self
    }

    /// Serves the output of a finished task as a file of its own type (a CSV, a PDF) on
    /// `GET /{id}/result`, instead of as JSON; the status page then links to it as a download.
    ///
    /// ```
    /// # use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
    /// # struct Report;
    /// # impl Job for Report {
    /// #     const NAME: &'static str = "report";
    /// #     type Params = u32;
    /// #     type Output = Vec<(u32, u32)>;
    /// #     async fn run(&self, p: u32, _: TaskContext) -> Result<Self::Output, JobError> { Ok(vec![(1, p)]) }
    /// # }
    /// use longtask_tower::ResultFile;
    ///
    /// let service = longtask_tower::JobService::<Report>::new(Client::new(MemoryBackend::new()))
    ///     .with_result_file(|rows: &Vec<(u32, u32)>| {
    ///         let mut csv = String::from("day,invoices\n");
    ///         for (day, n) in rows {
    ///             csv.push_str(&format!("{day},{n}\n"));
    ///         }
    ///         ResultFile::new("text/csv; charset=utf-8", csv).filename("report.csv")
    ///     });
    /// ```
    #[must_use]
    pub fn with_result_file<F>(mut self, render: F) -> Self
    where
        F: Fn(&J::Output) -> ResultFile + Send + Sync + 'static,
    {
        self.config_mut().result_file = Some(Arc::new(render));
        self
    }

    /// How the status page shows a finished task's output: a function returning an HTML
    /// fragment. The fragment is inserted as is: pass every string from the output through
    /// [`escape`](crate::escape). Inline scripts and styles are blocked by the page's
    /// Content-Security-Policy.
    ///
    /// ```
    /// # use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
    /// # struct Report;
    /// # impl Job for Report {
    /// #     const NAME: &'static str = "report";
    /// #     type Params = u32;
    /// #     type Output = String;
    /// #     async fn run(&self, p: u32, _: TaskContext) -> Result<String, JobError> { Ok(p.to_string()) }
    /// # }
    /// let service = longtask_tower::JobService::<Report>::new(Client::new(MemoryBackend::new()))
    ///     .with_result_html(|total: &String| {
    ///         format!("<p>Total: <strong>{}</strong></p>", longtask_tower::escape(total))
    ///     });
    /// ```
    #[must_use]
    pub fn with_result_html<F>(mut self, render: F) -> Self
    where
        F: Fn(&J::Output) -> String + Send + Sync + 'static,
    {
        self.config_mut().result_html = Some(Arc::new(render));
        self
    }

    /// This service as middleware: answers under its [`at`](Self::at) path and passes every
    /// other request to the service it wraps.
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
    /// let layer = longtask_tower::JobService::<Report>::new(Client::new(MemoryBackend::new()))
    ///     .at("/reports")
    ///     .layer();
    /// ```
    pub fn layer(self) -> JobLayer<J> {
        JobLayer::from_service(self)
    }

    /// The path this service is mounted at (`""` for the root).
    pub(crate) fn base(&self) -> &str {
        &self.config.base
    }
}

impl<J, B> tower::Service<Request<B>> for JobService<J>
where
    J: Job,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let config = Arc::clone(&self.config);
        ResponseFuture::new(async move {
            let (parts, body) = req.into_parts();
            let mut response = config
                .route(&parts, body)
                .await
                .unwrap_or_else(Problem::into_response);
            // Problem details echo what the client sent: no browser may read any answer as
            // something other than its declared type.
            response
                .headers_mut()
                .entry(header::X_CONTENT_TYPE_OPTIONS)
                .or_insert(HeaderValue::from_static("nosniff"));
            response
        })
    }
}

/// `path` as it appears in a request line: characters a path may not hold (spaces, quotes,
/// non-ASCII...) percent-encoded, existing `%XX` escapes kept. The links built from it are then
/// valid in a `Location` header and match the paths requests arrive with.
pub(crate) fn encode_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    for (i, &b) in bytes.iter().enumerate() {
        let escape_start = b == b'%'
            && bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) || escape_start {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_from_names() {
        assert_eq!(default_title("monthly-report"), "Monthly report");
        assert_eq!(default_title(""), "");
    }

    #[test]
    fn mount_paths_are_encoded() {
        assert_eq!(encode_path("rapports été"), "rapports%20%C3%A9t%C3%A9");
        assert_eq!(encode_path("a%20b/c\"d<"), "a%20b/c%22d%3C");
        assert_eq!(encode_path("100%"), "100%25");
    }
}
