//! [`GroupService`]: the HTTP endpoints of [task groups](longtask_core::Client::group), as a
//! `tower::Service`: one bookmarkable status for many tasks.
//!
//! ```
//! use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
//! use longtask_tower::{GroupService, JobService};
//!
//! struct Month;
//! impl Job for Month {
//!     const NAME: &'static str = "month";
//!     type Params = u32;
//!     type Output = u64;
//!     async fn run(&self, month: u32, _cx: TaskContext) -> Result<u64, JobError> {
//!         Ok(u64::from(month) * 100)
//!     }
//! }
//!
//! let client = Client::new(MemoryBackend::new());
//! // axum: Router::new()
//! //     .nest_service("/months", months)
//! //     .nest_service("/years", years)
//! let months = JobService::<Month>::new(client.clone()).at("/months");
//! let years = GroupService::new(client)
//!     .at("/years")
//!     .with_title("Yearly export")
//!     .with_job_at::<Month>("/months"); // each member's row links to its own page
//! ```

mod events;
mod page;
mod view;

use std::{
    collections::HashMap,
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

pub(crate) use self::{
    events::events,
    page::{GroupPage, CSP as GROUP_CSP},
    view::{etag, retry_after, GroupState, GroupView},
};
use crate::{
    body::ResponseBody,
    future::ResponseFuture,
    problem::Problem,
    service::{encode_path, DEFAULT_MAX_WATCHERS},
};

/// How often an open event stream re-reads its group, by default.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

type OwnerFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;
type TaskFn<T> = Arc<dyn Fn(&TaskRecord) -> Option<T> + Send + Sync>;

/// The HTTP endpoints of task groups, answering under the mount point it is given: a group's
/// status (JSON, or an HTML page with one progress bar for the whole group and the list of its
/// tasks), live events, the completion job's result, and cancel. Cheap to clone.
///
/// Groups are submitted by the application ([`Client::group`](longtask_core::Client::group));
/// the service shows them. Routes, relative to the mount point:
///
/// | request | answer |
/// |---|---|
/// | `GET /{group}` | the group's status, as JSON or (for `Accept: text/html`) its page; `ETag`, `Retry-After` |
/// | `GET /{group}/events` | Server-Sent Events, one per change of the group, ending after it is final |
/// | `GET /{group}/result` | `200` + the completion job's output; `202` while unfinished; `409` if it failed or was cancelled; `404` for a group without a completion job |
/// | `DELETE /{group}`, `POST /{group}/cancel` | cancels the whole group |
///
/// The id of a task that is not a group's root is `404`, as is a group of another owner (see
/// [`with_owner`](Self::with_owner)). Every error is an RFC 9457 problem document.
///
/// Live events re-read the group every second (see
/// [`with_poll_interval`](Self::with_poll_interval)) and send an event only when it changed:
/// one status read and one listing of the members per open stream and interval, however many
/// members the group has, instead of a watch per member.
#[derive(Clone)]
pub struct GroupService {
    config: Arc<GroupConfig>,
}

/// What a [`GroupService`] was built with, shared by its clones; the routes read it.
#[derive(Clone)]
pub(crate) struct GroupConfig {
    pub(crate) client: Client,
    /// The public mount path, percent-encoded (`""` for the root).
    pub(crate) base: String,
    pub(crate) title: String,
    pub(crate) owner: Option<OwnerFn>,
    /// Mount points of member jobs, by job name (percent-encoded).
    pub(crate) job_mounts: HashMap<String, String>,
    pub(crate) member_link: Option<TaskFn<String>>,
    pub(crate) member_label: Option<TaskFn<String>>,
    /// How the page shows the completion job's output (by the root's record).
    pub(crate) result_html: Option<TaskFn<String>>,
    pub(crate) watchers: Arc<Semaphore>,
    pub(crate) max_watchers: usize,
    pub(crate) poll_interval: Duration,
}

impl fmt::Debug for GroupService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupService")
            .field("base", &self.config.base)
            .field("job_mounts", &self.config.job_mounts)
            .field("max_watchers", &self.config.max_watchers)
            .field("poll_interval", &self.config.poll_interval)
            .finish_non_exhaustive()
    }
}

impl GroupService {
    /// The group endpoints, reading through `client`, mounted at the root (`/`) until
    /// [`at`](Self::at) says otherwise.
    ///
    /// ```
    /// let service = longtask_tower::GroupService::new(
    ///     longtask_core::Client::new(longtask_core::MemoryBackend::new()),
    /// );
    /// ```
    pub fn new(client: Client) -> Self {
        Self {
            config: Arc::new(GroupConfig {
                client,
                base: String::new(),
                title: "Task group".to_owned(),
                owner: None,
                job_mounts: HashMap::new(),
                member_link: None,
                member_label: None,
                result_html: None,
                watchers: Arc::new(Semaphore::new(DEFAULT_MAX_WATCHERS)),
                max_watchers: DEFAULT_MAX_WATCHERS,
                poll_interval: DEFAULT_POLL_INTERVAL,
            }),
        }
    }

    fn config_mut(&mut self) -> &mut GroupConfig {
        Arc::make_mut(&mut self.config)
    }

    /// The public path the service is mounted at (`"/groups"`), for the links in its answers;
    /// requests may arrive with it stripped (axum's `nest_service`) or whole, as with
    /// [`JobService::at`](crate::JobService::at).
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let service = longtask_tower::GroupService::new(client).at("/groups");
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

    /// The title of the group page (default "Task group").
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let service = longtask_tower::GroupService::new(client).with_title("Yearly export");
    /// ```
    #[must_use]
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.config_mut().title = title.into();
        self
    }

    /// Who is asking, as with [`JobService::with_owner`](crate::JobService::with_owner): with a
    /// hook, a group is shown only to the owner it was submitted with
    /// ([`NewGroup::owner`](longtask_core::NewGroup::owner)); any other group is `404`.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let service = longtask_tower::GroupService::new(client).with_owner(|parts| {
    ///     parts.headers.get("x-user-id")?.to_str().ok().map(str::to_owned)
    /// });
    /// ```
    #[must_use]
    pub fn with_owner<F>(mut self, owner: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.config_mut().owner = Some(Arc::new(owner));
        self
    }

    /// Says where the [`JobService`](crate::JobService) of job `J` is mounted, so that the
    /// group's members of that job link to their own status pages (`{path}/{id}`).
    ///
    /// ```
    /// # use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
    /// # struct Month;
    /// # impl Job for Month {
    /// #     const NAME: &'static str = "month";
    /// #     type Params = u32;
    /// #     type Output = u32;
    /// #     async fn run(&self, p: u32, _: TaskContext) -> Result<u32, JobError> { Ok(p) }
    /// # }
    /// let service = longtask_tower::GroupService::new(Client::new(MemoryBackend::new()))
    ///     .with_job_at::<Month>("/months");
    /// ```
    #[must_use]
    pub fn with_job_at<J: Job>(mut self, path: impl AsRef<str>) -> Self {
        let trimmed = path.as_ref().trim_matches('/');
        let mount = if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{}", encode_path(trimmed))
        };
        self.config_mut()
            .job_mounts
            .insert(J::NAME.to_owned(), mount);
        self
    }

    /// Where a member (or the completion job) links to, for jobs not named by
    /// [`with_job_at`](Self::with_job_at): any URL, or `None` for no link.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let service = longtask_tower::GroupService::new(client)
    ///     .with_member_link(|task| (task.job == "export").then(|| format!("/exports/{}", task.id)));
    /// ```
    #[must_use]
    pub fn with_member_link<F>(mut self, link: F) -> Self
    where
        F: Fn(&TaskRecord) -> Option<String> + Send + Sync + 'static,
    {
        self.config_mut().member_link = Some(Arc::new(link));
        self
    }

    /// How a member is named in the page's list and the JSON's `label` (default: its job's
    /// name and its place in the group, "month 3"). The text is escaped.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let service = longtask_tower::GroupService::new(client).with_member_label(|task| {
    ///     let params: serde_json::Value = serde_json::from_str(&task.params).ok()?;
    ///     params["month"].as_str().map(str::to_owned)
    /// });
    /// ```
    #[must_use]
    pub fn with_member_label<F>(mut self, label: F) -> Self
    where
        F: Fn(&TaskRecord) -> Option<String> + Send + Sync + 'static,
    {
        self.config_mut().member_label = Some(Arc::new(label));
        self
    }

    /// How the page shows the output of a finished completion job of job `J`: a function
    /// returning an HTML fragment, inserted as is (pass every string through
    /// [`escape`](crate::escape)). Without it, or for a completion job of another job, the
    /// page shows the output as JSON.
    ///
    /// ```
    /// # use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
    /// # struct YearTotal;
    /// # impl Job for YearTotal {
    /// #     const NAME: &'static str = "year-total";
    /// #     type Params = ();
    /// #     type Output = u64;
    /// #     async fn run(&self, _: (), _: TaskContext) -> Result<u64, JobError> { Ok(0) }
    /// # }
    /// let service = longtask_tower::GroupService::new(Client::new(MemoryBackend::new()))
    ///     .with_result_html::<YearTotal>(|total: &u64| {
    ///         format!("<p>The year: <strong>{total}</strong> invoices</p>")
    ///     });
    /// ```
    #[must_use]
    pub fn with_result_html<J: Job>(
        mut self,
        render: impl Fn(&J::Output) -> String + Send + Sync + 'static,
    ) -> Self {
        self.config_mut().result_html = Some(Arc::new(move |root: &TaskRecord| {
            if root.job != J::NAME {
                return None;
            }
            let output = serde_json::from_str::<J::Output>(root.output.as_deref()?).ok()?;
            Some(render(&output))
        }));
        self
    }

    /// How many live event streams may be open at once across all clones of this service;
    /// default 10,000. Past it, a stream request answers `503` and the page reloads itself
    /// every few seconds instead. `0` turns live streams off.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let service = longtask_tower::GroupService::new(client).with_max_watchers(500);
    /// ```
    #[must_use]
    pub fn with_max_watchers(mut self, streams: usize) -> Self {
        let streams = streams.min(Semaphore::MAX_PERMITS);
        let config = self.config_mut();
        config.max_watchers = streams;
        config.watchers = Arc::new(Semaphore::new(streams));
        self
    }

    /// How often an open event stream re-reads its group (default 1 s, at least 50 ms). Each
    /// read is one status read and one listing of the group's members on the backend; an
    /// event is sent only when something shown changed.
    ///
    /// ```
    /// # let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// let service = longtask_tower::GroupService::new(client)
    ///     .with_poll_interval(std::time::Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.config_mut().poll_interval = every.max(Duration::from_millis(50));
        self
    }
}

impl GroupConfig {
    /// Where a member links to: its job's mount point, or the hook's answer.
    pub(crate) fn member_link(&self, task: &TaskRecord) -> Option<String> {
        if let Some(mount) = self.job_mounts.get(&task.job) {
            return Some(format!("{mount}/{}", task.id));
        }
        self.member_link.as_ref().and_then(|link| link(task))
    }

    /// How the member at `index` (0-based) is named.
    pub(crate) fn member_label(&self, task: &TaskRecord, index: usize) -> String {
        self.member_label
            .as_ref()
            .and_then(|label| label(task))
            .unwrap_or_else(|| format!("{} {}", task.job, index + 1))
    }
}

impl<B> tower::Service<Request<B>> for GroupService
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
            // The routes read no body: it is dropped unread.
            let (parts, _body) = req.into_parts();
            let mut response = config
                .route(&parts)
                .await
                .unwrap_or_else(Problem::into_response);
            response
                .headers_mut()
                .entry(header::X_CONTENT_TYPE_OPTIONS)
                .or_insert(HeaderValue::from_static("nosniff"));
            response
        })
    }
}
