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
    fmt::{self, Write as _},
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use chrono::Utc;
use http::{header, request::Parts, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use longtask_core::{
    BoxError, CancelOutcome, Client, Job, SubmitOptions, TaskId, TaskRecord, TaskStatus,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    accept::{negotiate, Format},
    body::ResponseBody,
    future::ResponseFuture,
    html::{self, Page},
    layer::JobLayer,
    problem::{human_size, truncate, Problem},
    render::ResultFile,
    sse,
    status::{self, Links, StatusView},
};

/// The Content-Security-Policy of results: documents that can do nothing.
const RESULT_CSP: &str = "default-src 'none'; sandbox";

/// The default largest request body: 1 MiB.
const DEFAULT_BODY_LIMIT: usize = 1 << 20;

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

struct Config<J: Job> {
    client: Client,
    base: String,
    title: String,
    body_limit: usize,
    owner: Option<OwnerFn>,
    result_file: Option<FileFn<J::Output>>,
    result_html: Option<HtmlFn<J::Output>>,
}

impl<J: Job> Clone for Config<J> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            base: self.base.clone(),
            title: self.title.clone(),
            body_limit: self.body_limit,
            owner: self.owner.clone(),
            result_file: self.result_file.clone(),
            result_html: self.result_html.clone(),
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
                owner: None,
                result_file: None,
                result_html: None,
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
            config
                .route(&parts, body)
                .await
                .unwrap_or_else(Problem::into_response)
        })
    }
}

/// `path` as it appears in a request line: characters a path may not hold (spaces, quotes,
/// non-ASCII...) percent-encoded, existing `%XX` escapes kept. The links built from it are then
/// valid in a `Location` header and match the paths requests arrive with.
fn encode_path(path: &str) -> String {
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

/// A route, relative to the mount point.
enum Route<'a> {
    Mount,
    Task(&'a str),
    Events(&'a str),
    Result(&'a str),
    Cancel(&'a str),
    Unknown,
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Self {
        let path = path.trim_start_matches('/');
        let path = path.strip_suffix('/').unwrap_or(path);
        if path.is_empty() {
            return Self::Mount;
        }
        let mut segments = path.splitn(3, '/');
        let id = segments.next().unwrap_or("");
        match (segments.next(), segments.next()) {
            (None, _) => Self::Task(id),
            (Some("events"), None) => Self::Events(id),
            (Some("result"), None) => Self::Result(id),
            (Some("cancel"), None) => Self::Cancel(id),
            _ => Self::Unknown,
        }
    }
}

enum BodyKind {
    Json,
    Form,
}

#[derive(Serialize)]
struct Submitted<'a> {
    id: TaskId,
    status: TaskStatus,
    links: &'a Links,
}

type Answer = Result<Response<ResponseBody>, Problem>;

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn see_other(location: &str) -> Answer {
    let mut response = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    response
        .headers_mut()
        .insert(header::LOCATION, header_value(location)?);
    Ok(response)
}

fn header_value(value: &str) -> Result<HeaderValue, Problem> {
    HeaderValue::from_str(value).map_err(|_| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "could not build a header for this answer; check the path given to `JobService::at`",
        )
    })
}

fn set_retry_after(
    response: &mut Response<ResponseBody>,
    task: &TaskRecord,
    now: chrono::DateTime<Utc>,
) {
    if let Some(secs) = status::retry_after(task, now) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

impl<J: Job> Config<J> {
    /// The request's path relative to the mount point, whether or not it was stripped already.
    fn relative<'a>(&self, path: &'a str) -> &'a str {
        if self.base.is_empty() {
            return path;
        }
        match path.strip_prefix(self.base.as_str()) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
            _ => path,
        }
    }

    async fn route<B>(&self, parts: &Parts, body: B) -> Answer
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let method = &parts.method;
        let reads = method == Method::GET || method == Method::HEAD;
        match Route::parse(self.relative(parts.uri.path())) {
            Route::Mount if method == Method::POST => self.submit(parts, body).await,
            Route::Mount => Err(Problem::method_not_allowed(method, "POST")),
            Route::Task(id) if reads => self.status(parts, id).await,
            Route::Task(id) if method == Method::DELETE => self.cancel(parts, id, false).await,
            Route::Task(_) => Err(Problem::method_not_allowed(method, "GET, HEAD, DELETE")),
            Route::Events(id) if reads => self.events(parts, id).await,
            Route::Result(id) if reads => self.result(parts, id).await,
            Route::Events(_) | Route::Result(_) => {
                Err(Problem::method_not_allowed(method, "GET, HEAD"))
            }
            Route::Cancel(id) if method == Method::POST => self.cancel(parts, id, true).await,
            Route::Cancel(_) => Err(Problem::method_not_allowed(method, "POST")),
            Route::Unknown => Err(Problem::new(
                StatusCode::NOT_FOUND,
                format!(
                    "nothing at `{}`; the routes are POST {base}/, GET {base}/{{id}}, GET {base}/{{id}}/events, \
                     GET {base}/{{id}}/result, DELETE {base}/{{id}} and POST {base}/{{id}}/cancel",
                    truncate(parts.uri.path(), 100),
                    base = self.base,
                ),
            )),
        }
    }

    /// `Cache-Control` of an answer about a task: `private` whenever tasks have owners, so that
    /// no shared cache keeps one person's task for another (`no-cache` too while it may change:
    /// `changing`); `no-cache` otherwise.
    fn cache_control(&self, changing: bool) -> HeaderValue {
        HeaderValue::from_static(match (self.owner.is_some(), changing) {
            (true, true) => "private, no-cache",
            (true, false) => "private",
            (false, _) => "no-cache",
        })
    }

    fn owner(&self, parts: &Parts) -> Option<String> {
        self.owner.as_ref().and_then(|owner| owner(parts))
    }

    /// The task, if it exists, is of this job, and belongs to the requester.
    async fn load(&self, parts: &Parts, id: &str) -> Result<TaskRecord, Problem> {
        let task_id: TaskId = id.parse().map_err(|_| Problem::not_found(id))?;
        let task = self
            .client
            .status(task_id)
            .await
            .map_err(|e| Problem::from_error(&e))?;
        let visible =
            task.job == J::NAME && (self.owner.is_none() || task.owner == self.owner(parts));
        if visible {
            Ok(task)
        } else {
            Err(Problem::not_found(id))
        }
    }

    fn links(&self, id: TaskId) -> Links {
        Links::new(&self.base, id)
    }

    async fn submit<B>(&self, parts: &Parts, body: B) -> Answer
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let format = negotiate(&parts.headers, &[Format::Json, Format::Html])
            .ok_or_else(|| Problem::not_acceptable("application/json or text/html"))?;
        let kind = body_kind(parts)?;
        if matches!(kind, BodyKind::Form) {
            refuse_cross_site(parts)?;
        }
        let bytes = self.read_body(parts, body).await?;
        let (params, form_key) = match kind {
            BodyKind::Json => (decode_json::<J>(&bytes)?, None),
            BodyKind::Form => decode_form::<J>(&bytes)?,
        };
        let mut sent = parts.headers.get_all("idempotency-key").iter();
        let key = match (sent.next(), sent.next()) {
            (Some(_), Some(_)) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "several Idempotency-Key headers; send one",
                ))
            }
            (Some(value), None) => {
                let text = value.to_str().map_err(|_| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "the Idempotency-Key header is not ASCII text; an idempotency key is 1 to \
                         255 printable ASCII characters (a UUID is a good one)",
                    )
                })?;
                Some(check_key(text, "the Idempotency-Key header")?)
            }
            _ => form_key,
        };
        let owner = self.owner(parts);
        let mut options = SubmitOptions::new();
        if let Some(key) = key {
            // Keys are scoped to the owner; with an owner hook, requests without an owner get
            // a scope of their own, so that no key sent by one can name another's task.
            options = options.idempotency_key(match (&owner, &self.owner) {
                (Some(owner), _) => scoped_key(owner, &key),
                (None, Some(_)) => format!("-:{key}"),
                (None, None) => key,
            });
        }
        if let Some(owner) = owner {
            options = options.owner(owner);
        }
        let inserted = self
            .client
            .submit_with::<J>(params, options)
            .await
            .map_err(|e| Problem::from_error(&e))?;
        let links = self.links(inserted.id);
        let (code, status) = if inserted.created {
            (StatusCode::ACCEPTED, TaskStatus::Queued)
        } else {
            // The key named an existing task: show it only to whoever may see it.
            let task = self
                .load(parts, &inserted.id.to_string())
                .await
                .map_err(|problem| {
                    if problem.status() == StatusCode::NOT_FOUND {
                        Problem::new(
                            StatusCode::CONFLICT,
                            "this idempotency key is already in use; send another key",
                        )
                    } else {
                        problem
                    }
                })?;
            (StatusCode::OK, task.status)
        };
        if format == Format::Html && matches!(kind, BodyKind::Form) {
            return see_other(&links.this);
        }
        let body = serde_json::to_vec(&Submitted {
            id: inserted.id,
            status,
            links: &links,
        })
        .unwrap_or_default();
        let mut response = respond(code, "application/json", body);
        response
            .headers_mut()
            .insert(header::LOCATION, header_value(&links.this)?);
        Ok(response)
    }

    async fn read_body<B>(&self, parts: &Parts, body: B) -> Result<Bytes, Problem>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let too_large = || {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body exceeds {} limit (set with `with_body_limit`)",
                    human_size(self.body_limit)
                ),
            )
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.body_limit as u64) {
            return Err(too_large());
        }
        match Limited::new(body, self.body_limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(err) if err.is::<LengthLimitError>() => Err(too_large()),
            Err(err) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {err}"),
            )),
        }
    }

    async fn status(&self, parts: &Parts, id: &str) -> Answer {
        // `?format=json` (the page's "as JSON" link) overrides the Accept header.
        let forced = parts.uri.query().and_then(|q| {
            q.split('&').find_map(|pair| match pair {
                "format=json" => Some(Format::Json),
                "format=html" => Some(Format::Html),
                _ => None,
            })
        });
        let format = forced
            .or_else(|| negotiate(&parts.headers, &[Format::Json, Format::Html]))
            .ok_or_else(|| Problem::not_acceptable("application/json or text/html"))?;
        let task = self.load(parts, id).await?;
        let now = Utc::now();
        let links = self.links(task.id);
        let tag = match format {
            Format::Html => status::etag(
                &task,
                1,
                &[
                    task.eta(now).map_or(0, status::ceil_secs),
                    if task.status.is_final() {
                        0
                    } else {
                        now.timestamp().unsigned_abs()
                    },
                ],
            ),
            _ => status::etag(
                &task,
                0,
                &[
                    task.eta(now).map_or(0, status::ceil_secs),
                    status::next_attempt_in(&task, now).unwrap_or(0),
                ],
            ),
        };
        let not_modified = parts
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| status::none_match(v, &tag));
        let mut response = if not_modified {
            let mut r = Response::new(ResponseBody::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else if format == Format::Html {
            let result_html = if task.status == TaskStatus::Succeeded {
                Some(self.result_html(&task, &links))
            } else {
                None
            };
            let page = Page {
                title: &self.title,
                task: &task,
                links: &links,
                now,
                result_html,
            };
            let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", page.render());
            r.headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, html::CSP.clone());
            r.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            r.headers_mut().insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            r
        } else {
            respond(
                StatusCode::OK,
                "application/json",
                StatusView::new(&task, &links, now).to_json(),
            )
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, header_value(&tag)?);
        headers.insert(header::CACHE_CONTROL, self.cache_control(true));
        headers.insert(header::VARY, HeaderValue::from_static("accept"));
        set_retry_after(&mut response, &task, now);
        Ok(response)
    }

    /// The result as the status page shows it.
    fn result_html(&self, task: &TaskRecord, links: &Links) -> String {
        let output = task.output.as_deref().unwrap_or("null");
        if self.result_html.is_none() && self.result_file.is_none() {
            return html::json_result(output, &links.result);
        }
        let Ok(decoded) = serde_json::from_str::<J::Output>(output) else {
            return html::json_result(output, &links.result);
        };
        if let Some(render) = &self.result_html {
            return render(&decoded);
        }
        match self.result_file.as_ref().map(|render| render(&decoded)) {
            Some(file) => html::download_result(file.name().unwrap_or("the result"), &links.result),
            None => html::json_result(output, &links.result),
        }
    }

    async fn events(&self, parts: &Parts, id: &str) -> Answer {
        negotiate(&parts.headers, &[Format::EventStream])
            .ok_or_else(|| Problem::not_acceptable("text/event-stream"))?;
        let task = self.load(parts, id).await?;
        let mut response = if parts.method == Method::HEAD {
            // The headers only: no stream to watch and then throw away.
            Response::new(ResponseBody::empty())
        } else {
            let updates = self
                .client
                .watch(task.id)
                .await
                .map_err(|e| Problem::from_error(&e))?;
            Response::new(ResponseBody::stream(sse::events(
                updates,
                self.links(task.id),
            )))
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, self.cache_control(true));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Ok(response)
    }

    async fn result(&self, parts: &Parts, id: &str) -> Answer {
        let task = self.load(parts, id).await?;
        let links = self.links(task.id);
        match task.status {
            TaskStatus::Succeeded => {
                let output = task.output.as_deref().unwrap_or("null");
                if let Some(render) = &self.result_file {
                    let decoded = serde_json::from_str::<J::Output>(output).map_err(|e| {
                        tracing::warn!(error = %e, task = %task.id, "stored output does not decode");
                        Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "the stored output does not decode as this job's output ({e}); \
                                 was the job's Output type changed?"
                            ),
                        )
                    })?;
                    let file = render(&decoded);
                    let disposition = file.disposition();
                    let mut response = Response::new(ResponseBody::full(file.body));
                    let headers = response.headers_mut();
                    headers.insert(header::CONTENT_TYPE, file.content_type);
                    if let Some(d) = disposition {
                        headers.insert(header::CONTENT_DISPOSITION, d);
                    }
                    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                    // A file opened in the browser (an HTML or SVG output) runs nothing and
                    // reaches nothing on this origin.
                    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(RESULT_CSP));
                    headers.insert(header::CACHE_CONTROL, self.cache_control(false));
                    return Ok(response);
                }
                negotiate(&parts.headers, &[Format::Json])
                    .ok_or_else(|| Problem::not_acceptable("application/json"))?;
                let mut response = respond(
                    StatusCode::OK,
                    "application/json",
                    Bytes::copy_from_slice(output.as_bytes()),
                );
                let headers = response.headers_mut();
                headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(RESULT_CSP));
                headers.insert(header::CACHE_CONTROL, self.cache_control(false));
                Ok(response)
            }
            TaskStatus::Failed => Err(Problem::new(
                StatusCode::CONFLICT,
                format!(
                    "the task failed after {} of {} attempts ({}); there is no result: submit it again to retry",
                    task.attempt,
                    task.max_attempts,
                    task.last_error.as_ref().map_or("no error was recorded", |e| e.message.as_str())
                ),
            )),
            TaskStatus::Cancelled => Err(Problem::new(
                StatusCode::CONFLICT,
                "the task was cancelled; there is no result: submit it again to run it",
            )),
            _ => {
                let now = Utc::now();
                let mut response = respond(
                    StatusCode::ACCEPTED,
                    "application/json",
                    StatusView::new(&task, &links, now).to_json(),
                );
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_LOCATION, header_value(&links.this)?);
                headers.insert(header::CACHE_CONTROL, self.cache_control(true));
                set_retry_after(&mut response, &task, now);
                Ok(response)
            }
        }
    }

    async fn cancel(&self, parts: &Parts, id: &str, form: bool) -> Answer {
        if form {
            refuse_cross_site(parts)?;
        }
        let task = self.load(parts, id).await?;
        let outcome = self
            .client
            .cancel(task.id)
            .await
            .map_err(|e| Problem::from_error(&e))?;
        let links = self.links(task.id);
        if form && negotiate(&parts.headers, &[Format::Json, Format::Html]) == Some(Format::Html) {
            return see_other(&links.this);
        }
        let code = match outcome {
            CancelOutcome::Cancelled | CancelOutcome::AlreadyFinished(TaskStatus::Cancelled) => {
                StatusCode::OK
            }
            CancelOutcome::Requested => StatusCode::ACCEPTED,
            CancelOutcome::AlreadyFinished(status) => {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    format!("the task already {status}; there is nothing to cancel"),
                ))
            }
        };
        let task = self.load(parts, id).await?;
        Ok(respond(
            code,
            "application/json",
            StatusView::new(&task, &links, Utc::now()).to_json(),
        ))
    }
}

/// Refuses a request a browser sent on behalf of another site: a form post (a "simple"
/// request, which no CORS preflight guards) from a page elsewhere would otherwise submit or
/// cancel tasks with the visitor's cookies. Browsers say where a request comes from in
/// `Sec-Fetch-Site`; older ones only in `Origin`, compared with the host asked for. Requests
/// without either (programs, curl) pass.
fn refuse_cross_site(parts: &Parts) -> Result<(), Problem> {
    let refused = |from: &str| {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "this form was posted from {from}; forms that submit or cancel tasks must be \
                 posted from a page of this site"
            ),
        ))
    };
    if let Some(site) = parts.headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            b"same-site" => refused("another origin of this site"),
            _ => refused("another site"),
        };
    }
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str));
    let Some(host) = host else {
        return Ok(());
    };
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    if origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host)) {
        Ok(())
    } else {
        refused("another site")
    }
}

fn body_kind(parts: &Parts) -> Result<BodyKind, Problem> {
    let unsupported = |got: &str| {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "send the parameters as application/json or application/x-www-form-urlencoded (got {got})"
            ),
        )
    };
    let mut values = parts.headers.get_all(header::CONTENT_TYPE).iter();
    let Some(value) = values.next() else {
        return Err(unsupported("no Content-Type header"));
    };
    if values.next().is_some() {
        return Err(unsupported("several Content-Type headers; send one"));
    }
    let Ok(text) = value.to_str() else {
        return Err(unsupported("a Content-Type that is not ASCII text"));
    };
    let mut params = text.split(';');
    let essence = params.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    });
    if let Some(charset) = charset.filter(|c| !c.eq_ignore_ascii_case("utf-8")) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "send the body as UTF-8 (got charset={})",
                truncate(charset, 30)
            ),
        ));
    }
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(BodyKind::Json)
    } else if essence == "application/x-www-form-urlencoded" {
        Ok(BodyKind::Form)
    } else {
        Err(unsupported(&format!("`{}`", truncate(text, 60))))
    }
}

fn decode_json<J: Job>(bytes: &[u8]) -> Result<J::Params, Problem> {
    // A byte order mark (some Windows tools write one) is not part of the document.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let params = serde_path_to_error::deserialize::<_, J::Params>(&mut de)
        .map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_data() {
                json_data_problem::<J>(&path, &inner.to_string())
            } else {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not valid JSON ({inner}); send the parameters of `{}` as a JSON document", J::NAME),
                )
            }
        })?;
    de.end().map_err(|inner| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the body has more after its JSON document ({inner}); send one document"),
        )
    })?;
    Ok(params)
}

fn json_data_problem<J: Job>(path: &str, message: &str) -> Problem {
    let detail = if path == "." || path.is_empty() {
        format!(
            "the body does not fit the parameters of `{}`: {message}",
            J::NAME
        )
    } else {
        format!("field `{path}`: {message}")
    };
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
}

/// Decodes a form body; fields whose names start with `_` are not parameters
/// (`_idempotency_key` is the idempotency key).
fn decode_form<J: Job>(bytes: &[u8]) -> Result<(J::Params, Option<String>), Problem> {
    let mut key: Option<String> = None;
    let mut params = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_pairs(bytes)? {
        if name == "_idempotency_key" {
            if value.is_empty() {
                continue;
            }
            if key.as_ref().is_some_and(|k| *k != value) {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "the form has several different `_idempotency_key` fields; send one",
                ));
            }
            key = Some(check_key(&value, "the `_idempotency_key` field")?);
        } else if !name.starts_with('_') {
            params.append_pair(&name, &value);
        }
    }
    let encoded = params.finish();
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(encoded.as_bytes()));
    let params = serde_path_to_error::deserialize::<_, J::Params>(de).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        json_data_problem::<J>(&path, &message)
    })?;
    Ok((params, key))
}

/// The name/value pairs of a form body, decoded strictly: `+` is a space, `%XX` a byte, and the
/// result must be UTF-8 (a lossy decoding would store replacement characters in place of the
/// sender's text).
fn form_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, Problem> {
    let decode = |part: &[u8], field: Option<&str>| -> Result<String, Problem> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = part
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if let Some(byte) = hex {
                        out.push(byte);
                        i += 2;
                    } else {
                        out.push(b'%');
                    }
                }
                byte => out.push(byte),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| {
            let which = field.map_or_else(
                || "a field name".to_owned(),
                |name| format!("field `{}`", truncate(name, 60)),
            );
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{which} is not UTF-8 text; send the form encoded as UTF-8 \
                     (`<form accept-charset=\"utf-8\">`)"
                ),
            )
        })
    };
    bytes
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            let name = decode(name, None)?;
            // Fields that are not parameters are not read (a CSRF token may be any bytes).
            let value = if name.starts_with('_') && name != "_idempotency_key" {
                String::new()
            } else {
                decode(value, Some(&name))?
            };
            Ok((name, value))
        })
        .collect()
}

/// An owner's idempotency key as stored: `{len}:{owner}:{key}` (the length makes it
/// unambiguous), or with a long owner `#{sha256 of owner}:{key}`, so that the stored key stays
/// within the store's limit whatever the owner's length.
fn scoped_key(owner: &str, key: &str) -> String {
    if owner.len() <= 128 {
        return format!("{}:{owner}:{key}", owner.len());
    }
    let digest = Sha256::digest(owner.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    format!("#{hex}:{key}")
}

/// The longest idempotency key accepted, in bytes.
const MAX_KEY: usize = 255;

/// An idempotency key as sent (`from` says where, for the detail): 1 to 255 printable ASCII
/// characters, so that no backend or log sees control characters or odd encodings.
fn check_key(key: &str, from: &str) -> Result<String, Problem> {
    let bad = |why: String| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{from} {why}; an idempotency key is 1 to {MAX_KEY} printable ASCII characters \
                 (a UUID is a good one)"
            ),
        )
    };
    if key.is_empty() {
        return Err(bad("is empty".to_owned()));
    }
    if key.len() > MAX_KEY {
        return Err(bad(format!("is {} bytes long", key.len())));
    }
    if let Some(c) = key.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(bad(format!("holds the character {c:?}")));
    }
    Ok(key.to_owned())
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

    #[test]
    fn routes_parse() {
        assert!(matches!(Route::parse("/"), Route::Mount));
        assert!(matches!(Route::parse(""), Route::Mount));
        assert!(matches!(Route::parse("/abc"), Route::Task("abc")));
        assert!(matches!(Route::parse("/abc/"), Route::Task("abc")));
        assert!(matches!(Route::parse("/abc/events"), Route::Events("abc")));
        assert!(matches!(Route::parse("/abc/result"), Route::Result("abc")));
        assert!(matches!(Route::parse("/abc/cancel"), Route::Cancel("abc")));
        assert!(matches!(Route::parse("/abc/x"), Route::Unknown));
        assert!(matches!(Route::parse("/abc/events/x"), Route::Unknown));
    }
}
