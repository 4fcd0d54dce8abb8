//! [`Dashboard`]: the operators' pages, as a `tower::Service`: every queue's depth, throughput
//! and waiting time, the live workers, the tasks with their parameters, outputs and errors, and
//! the actions that steer them (retry, cancel, delete, retry every failed task of a job, purge).
//!
//! ```
//! use longtask_core::{Client, MemoryBackend};
//! use longtask_tower::Dashboard;
//!
//! let client = Client::new(MemoryBackend::new());
//! // axum: Router::new().nest_service("/admin", dashboard)
//! let dashboard = Dashboard::builder(client)
//!     .at("/admin")
//!     // Set by your authentication middleware, say.
//!     .authorize(|parts| parts.headers.get("x-role").is_some_and(|role| role == "operator"))
//!     .build();
//! ```

mod csrf;
mod events;
mod pages;
mod query;
mod routes;

use std::{
    convert::Infallible,
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{header, request::Parts, HeaderValue, Request, Response};
use http_body::Body;
use longtask_core::{BoxError, Client, Job, TaskRecord};
use tokio::sync::Semaphore;

use self::csrf::CsrfKey;
use crate::{body::ResponseBody, future::ResponseFuture, service::encode_path};

/// The default largest request body of an action: 16 KiB (a form holds a token and a job name).
const DEFAULT_BODY_LIMIT: usize = 16 << 10;
/// The default time an action's body has to arrive in full.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The default limit of open live-update streams.
const DEFAULT_MAX_WATCHERS: usize = 64;
/// How often a live-update stream reads the figures, by default and at the most.
const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Tasks per page of the task list, by default.
const DEFAULT_PAGE_SIZE: usize = 50;
/// The most tasks per page of the task list.
pub(crate) const MAX_PAGE_SIZE: usize = 500;

type AuthorizeFn = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;
type LinkFn = Arc<dyn Fn(&TaskRecord) -> Option<String> + Send + Sync>;

/// The operators' dashboard: an overview of every job (tasks per status, a throughput sparkline
/// of the last hour, the oldest waiting task's age), the live workers, a task list with filters,
/// each task's details, and actions. Mounted like [`JobService`](crate::JobService), at a prefix
/// such as `/admin`. Built with [`Dashboard::builder`]. Cheap to clone.
///
/// Routes, relative to the mount point:
///
/// | request | answer |
/// |---|---|
/// | `GET /` | the overview page, or (`Accept: application/json` or `?format=json`) its figures as JSON: the [`Stats`](longtask_core::Stats) fields, `totals`, `oldest_wait_seconds` and `workers` |
/// | `GET /events` | Server-Sent Events: the same JSON as `event: stats`, when it changes, at most once a second |
/// | `GET /tasks?job=&status=&owner=&after=&limit=` | the task list (or JSON `{tasks, next}`), oldest first, paged by `after` (a task id) |
/// | `GET /tasks/{id}` | one task: parameters, output, progress, last error, attempt, lease, timestamps (or its record as JSON) |
/// | `POST /tasks/{id}/retry`, `/cancel`, `/delete` | an action on one task; `303` back to the task (the list after a delete) |
/// | `POST /retry-failed` (form field `job`) | queues every failed task of the job again; `303` to the overview |
/// | `POST /purge` | purges the finished tasks past their retention now; `303` to the overview |
///
/// **Authorization cannot be forgotten.** The dashboard shows every task's parameters and
/// outputs (which may hold personal data) and its actions retry, cancel and delete work, so an
/// open one is an incident. Its builder has no `build` until you choose who may use it:
/// [`authorize`](DashboardBuilder::authorize) with a check of the request, or
/// [`allow_anyone`](DashboardBuilder::allow_anyone), which says in the code that the dashboard
/// is protected elsewhere (a loopback-only address, an authenticating proxy). Forgetting is a
/// compile error, not a deploy that leaks:
///
/// ```compile_fail,E0599
/// let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
/// let dashboard = longtask_tower::Dashboard::builder(client).build(); // no authorization chosen
/// ```
///
/// A refused request gets `403` (a problem document, or a short page for a browser), whatever
/// its route. The check runs on every request, before anything is read.
///
/// **Actions** are `POST` forms and nothing else changes state. Each is refused (`403`) when a
/// browser says it comes from another site (`Sec-Fetch-Site`, or an `Origin` that is not the
/// host asked for), and unless it carries a CSRF token: the HMAC of a random per-browser cookie
/// (`HttpOnly`, `SameSite=Strict`, set by every page) under a key random per dashboard (see
/// [`with_csrf_secret`](DashboardBuilder::with_csrf_secret) for several processes). After an
/// action the browser is sent back (`303`) to a page saying what happened.
///
/// **Pages** work without JavaScript (links, forms, and an overview that reloads itself every
/// 5 seconds); with it, the overview follows the figures live over `GET /events`. They carry
/// the strict Content-Security-Policy of the status page (their style and script allowed by
/// hash), and every string that comes from a task is escaped. Malformed input answers with a
/// problem document naming the field (`400`), unknown routes `404`, wrong methods `405`,
/// oversized bodies `413`; never `500`.
///
/// Screenshots, taken in headless Chromium by `tests/dashboard_browser.rs`: the overview
/// (`docs/dashboard-overview.png` in this crate's folder) and a task's details
/// (`docs/dashboard-task.png`).
#[derive(Clone)]
pub struct Dashboard {
    config: Arc<DashboardConfig>,
}

/// What a [`Dashboard`] was built with, shared by its clones.
#[derive(Clone)]
pub(crate) struct DashboardConfig {
    pub(crate) client: Client,
    /// The public mount path, percent-encoded (`""` for the root).
    pub(crate) base: String,
    pub(crate) title: String,
    /// `None`: anyone may use it ([`DashboardBuilder::allow_anyone`]).
    pub(crate) authorize: Option<AuthorizeFn>,
    pub(crate) csrf: CsrfKey,
    pub(crate) body_limit: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) watchers: Arc<Semaphore>,
    pub(crate) max_watchers: usize,
    pub(crate) page_size: usize,
    pub(crate) status_link: Option<LinkFn>,
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("base", &self.config.base)
            .field("title", &self.config.title)
            .field("open_to_anyone", &self.config.authorize.is_none())
            .field("max_watchers", &self.config.max_watchers)
            .finish_non_exhaustive()
    }
}

/// The first state of a [`DashboardBuilder`]: who may use the dashboard is not chosen yet, and
/// there is no `build`. Choose with [`DashboardBuilder::authorize`] or
/// [`DashboardBuilder::allow_anyone`].
#[derive(Debug, Clone, Copy)]
pub struct NeedsAuthorization;

/// The state of a [`DashboardBuilder`] once who may use the dashboard is chosen: it can
/// [`build`](DashboardBuilder::build).
#[derive(Clone)]
pub struct Authorized {
    rule: Option<AuthorizeFn>,
}

impl fmt::Debug for Authorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorized")
            .field("open_to_anyone", &self.rule.is_none())
            .finish()
    }
}

/// Builds a [`Dashboard`]. `A` is [`NeedsAuthorization`] until
/// [`authorize`](Self::authorize) or [`allow_anyone`](Self::allow_anyone) is called; only then
/// does [`build`](Self::build) exist.
pub struct DashboardBuilder<A = NeedsAuthorization> {
    config: DashboardConfig,
    auth: A,
}

impl<A: fmt::Debug> fmt::Debug for DashboardBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardBuilder")
            .field("base", &self.config.base)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// Starts building a dashboard over `client`'s backend.
    ///
    /// ```
    /// let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let dashboard = longtask_tower::Dashboard::builder(client)
    ///     .at("/admin")
    ///     .allow_anyone() // served on 127.0.0.1 only: see the quickstart demo
    ///     .build();
    /// ```
    pub fn builder(client: Client) -> DashboardBuilder<NeedsAuthorization> {
        DashboardBuilder {
            config: DashboardConfig {
                client,
                base: String::new(),
                title: "longtask".to_owned(),
                authorize: None,
                csrf: CsrfKey::random(),
                body_limit: DEFAULT_BODY_LIMIT,
                body_timeout: DEFAULT_BODY_TIMEOUT,
                poll_interval: MIN_POLL_INTERVAL,
                watchers: Arc::new(Semaphore::new(DEFAULT_MAX_WATCHERS)),
                max_watchers: DEFAULT_MAX_WATCHERS,
                page_size: DEFAULT_PAGE_SIZE,
                status_link: None,
            },
            auth: NeedsAuthorization,
        }
    }
}

impl DashboardBuilder<NeedsAuthorization> {
    /// Admits the requests for which `check` returns `true`, and refuses every other one with
    /// `403`. It sees the request's head: headers, URI and extensions, where an authentication
    /// middleware in front of the dashboard may have put the user (check for your own
    /// extension type there). It runs on every request, so keep it quick.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// #[derive(Clone)]
    /// struct User { admin: bool } // inserted by your authentication layer
    ///
    /// let dashboard = longtask_tower::Dashboard::builder(client)
    ///     .authorize(|parts| parts.extensions.get::<User>().is_some_and(|user| user.admin))
    ///     .build();
    /// ```
    pub fn authorize<F>(self, check: F) -> DashboardBuilder<Authorized>
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        DashboardBuilder {
            config: self.config,
            auth: Authorized {
                rule: Some(Arc::new(check)),
            },
        }
    }

    /// Admits every request. Choose it only where something else guards the dashboard: it is
    /// served on a loopback address only, or behind a proxy that authenticates. The name is
    /// there so that a reviewer sees the choice.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// // Served on 127.0.0.1 only.
    /// let dashboard = longtask_tower::Dashboard::builder(client).allow_anyone().build();
    /// ```
    pub fn allow_anyone(self) -> DashboardBuilder<Authorized> {
        DashboardBuilder {
            config: self.config,
            auth: Authorized { rule: None },
        }
    }
}

impl DashboardBuilder<Authorized> {
    /// The dashboard.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let dashboard = longtask_tower::Dashboard::builder(client).allow_anyone().build();
    /// ```
    pub fn build(self) -> Dashboard {
        let mut config = self.config;
        config.authorize = self.auth.rule;
        Dashboard {
            config: Arc::new(config),
        }
    }
}

impl<A> DashboardBuilder<A> {
    /// The public path the dashboard is mounted at (`"/admin"`), for its links; requests may
    /// arrive with it stripped (axum's `nest_service`) or whole, as with
    /// [`JobService::at`](crate::JobService::at).
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let builder = longtask_tower::Dashboard::builder(client).at("/admin");
    /// ```
    #[must_use]
    pub fn at(mut self, path: impl AsRef<str>) -> Self {
        let trimmed = path.as_ref().trim_matches('/');
        self.config.base = if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{}", encode_path(trimmed))
        };
        self
    }

    /// The name the pages carry (default "longtask").
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let builder = longtask_tower::Dashboard::builder(client).with_title("Billing queues");
    /// ```
    #[must_use]
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.config.title = title.into();
        self
    }

    /// The key of the CSRF tokens, derived from `secret`, for a dashboard served by several
    /// processes behind one address: a page from one process then posts to another. By
    /// default each dashboard draws a random key, and tokens do not outlive the process.
    /// Keep the secret as secret as a session key.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// # std::env::set_var("DASHBOARD_SECRET", "a long random string");
    /// let secret = std::env::var("DASHBOARD_SECRET").expect("DASHBOARD_SECRET is set");
    /// let builder = longtask_tower::Dashboard::builder(client).with_csrf_secret(secret);
    /// ```
    #[must_use]
    pub fn with_csrf_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.config.csrf = CsrfKey::from_secret(secret.as_ref());
        self
    }

    /// The largest action body accepted, in bytes (default 16 KiB); larger ones get `413`.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let builder = longtask_tower::Dashboard::builder(client).with_body_limit(4096);
    /// ```
    #[must_use]
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.config.body_limit = bytes;
        self
    }

    /// How many live-update streams (`GET /events`) may be open at once across all clones
    /// (default 64). Each reads the figures and the workers from the backend once per
    /// [poll interval](Self::with_poll_interval). Past the limit a stream request gets `503`,
    /// and the overview reloads itself every few seconds instead. `0` turns live updates off.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let builder = longtask_tower::Dashboard::builder(client).with_max_watchers(8);
    /// ```
    #[must_use]
    pub fn with_max_watchers(mut self, streams: usize) -> Self {
        let streams = streams.min(Semaphore::MAX_PERMITS);
        self.config.max_watchers = streams;
        self.config.watchers = Arc::new(Semaphore::new(streams));
        self
    }

    /// How often a live-update stream reads the figures (default and least 1 s).
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let builder = longtask_tower::Dashboard::builder(client)
    ///     .with_poll_interval(std::time::Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every.max(MIN_POLL_INTERVAL);
        self
    }

    /// Tasks per page of the task list when the request does not say (default 50, at most
    /// 500).
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let builder = longtask_tower::Dashboard::builder(client).with_page_size(100);
    /// ```
    #[must_use]
    pub fn with_page_size(mut self, tasks: usize) -> Self {
        self.config.page_size = tasks.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// Says where the [`JobService`](crate::JobService) of job `J` is mounted, so that the
    /// details of its tasks link to their status pages (`{path}/{id}`).
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
    /// let builder = longtask_tower::Dashboard::builder(Client::new(MemoryBackend::new()))
    ///     .with_job_at::<Report>("/reports");
    /// ```
    #[must_use]
    pub fn with_job_at<J: Job>(self, path: impl AsRef<str>) -> Self {
        let trimmed = path.as_ref().trim_matches('/');
        let mount = if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{}", encode_path(trimmed))
        };
        let earlier = self.config.status_link.clone();
        self.with_status_link(move |task| {
            if task.job == J::NAME {
                Some(format!("{mount}/{}", task.id))
            } else {
                earlier.as_ref().and_then(|link| link(task))
            }
        })
    }

    /// Where a task's details link to as its status page: any URL, or `None` for no link.
    /// Replaces what [`with_job_at`](Self::with_job_at) set before it.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let builder = longtask_tower::Dashboard::builder(client)
    ///     .with_status_link(|task| (task.job == "export").then(|| format!("/exports/{}", task.id)));
    /// ```
    #[must_use]
    pub fn with_status_link<F>(mut self, link: F) -> Self
    where
        F: Fn(&TaskRecord) -> Option<String> + Send + Sync + 'static,
    {
        self.config.status_link = Some(Arc::new(link));
        self
    }
}

impl<B> tower::Service<Request<B>> for Dashboard
where
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
            let mut response = config.answer(&parts, body).await;
            let headers = response.headers_mut();
            headers
                .entry(header::X_CONTENT_TYPE_OPTIONS)
                .or_insert(HeaderValue::from_static("nosniff"));
            // Nothing the dashboard shows belongs in a shared cache, nor in a frame.
            headers
                .entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static("no-store"));
            headers
                .entry(header::X_FRAME_OPTIONS)
                .or_insert(HeaderValue::from_static("DENY"));
            response
        })
    }
}
