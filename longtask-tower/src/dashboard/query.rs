//! What the dashboard reads from a request: the query of its pages (filters, paging, the
//! format, the notice an action left), strictly, naming the field that is wrong.

use http::{request::Parts, StatusCode};
use longtask_core::{TaskId, TaskQuery, TaskStatus};

use super::MAX_PAGE_SIZE;
use crate::{
    accept::{negotiate, Format},
    problem::{truncate, Problem},
    routes::submit::form_pairs,
};

/// The longest job name or owner accepted in a filter or a form, in bytes.
pub(crate) const MAX_NAME: usize = 1024;

/// What an action did, as the page it leads to says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    Retried,
    NotRetryable,
    InGroup,
    Cancelled,
    CancelRequested,
    AlreadyFinished,
    Deleted,
    NotFinished,
    RetriedFailed(u64),
    Purged(u64),
}

impl Notice {
    const NAMES: &'static [&'static str] = &[
        "retried",
        "not-retryable",
        "in-group",
        "cancelled",
        "cancel-requested",
        "already-finished",
        "deleted",
        "not-finished",
        "retried-failed",
        "purged",
    ];

    /// The query that carries it (`notice=...`, and `&count=...`).
    pub(crate) fn query(self) -> String {
        match self {
            Self::RetriedFailed(n) => format!("notice=retried-failed&count={n}"),
            Self::Purged(n) => format!("notice=purged&count={n}"),
            other => format!("notice={}", other.name()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Retried => "retried",
            Self::NotRetryable => "not-retryable",
            Self::InGroup => "in-group",
            Self::Cancelled => "cancelled",
            Self::CancelRequested => "cancel-requested",
            Self::AlreadyFinished => "already-finished",
            Self::Deleted => "deleted",
            Self::NotFinished => "not-finished",
            Self::RetriedFailed(_) => "retried-failed",
            Self::Purged(_) => "purged",
        }
    }

    /// Whether it tells of something done (rather than refused).
    pub(crate) fn is_success(self) -> bool {
        !matches!(
            self,
            Self::NotRetryable | Self::InGroup | Self::AlreadyFinished | Self::NotFinished
        )
    }

    /// What the page says.
    pub(crate) fn message(self) -> String {
        let tasks = |n: u64| {
            if n == 1 {
                "1 task".to_owned()
            } else {
                format!("{n} tasks")
            }
        };
        match self {
            Self::Retried => "The task is queued again, with a fresh attempt budget.".to_owned(),
            Self::NotRetryable => {
                "Only a failed or cancelled task can be retried: nothing changed.".to_owned()
            }
            Self::InGroup => {
                "A task of a group is not retried from here: nothing changed.".to_owned()
            }
            Self::Cancelled => "The task is cancelled.".to_owned(),
            Self::CancelRequested => {
                "Cancellation was requested: the task stops at its worker's next heartbeat."
                    .to_owned()
            }
            Self::AlreadyFinished => "The task had already finished: nothing changed.".to_owned(),
            Self::Deleted => "The task is deleted.".to_owned(),
            Self::NotFinished => {
                "Only a finished task can be deleted: cancel it first. Nothing changed.".to_owned()
            }
            Self::RetriedFailed(n) => format!("{} queued again.", tasks(n)),
            Self::Purged(n) => format!("{} past their retention purged.", tasks(n)),
        }
    }
}

fn bad(field: &str, detail: impl std::fmt::Display) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, format!("`{field}`: {detail}"))
}

/// The query's pairs, each name among `allowed`; `400` naming the first other one.
fn pairs(parts: &Parts, allowed: &[&str]) -> Result<Vec<(String, String)>, Problem> {
    let Some(query) = parts.uri.query() else {
        return Ok(Vec::new());
    };
    let pairs = form_pairs(query.as_bytes())?;
    if let Some((name, _)) = pairs
        .iter()
        .find(|(name, _)| !allowed.contains(&name.as_str()))
    {
        Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown query parameter `{}`; this page takes {}",
                truncate(name, 60),
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    } else {
        Ok(pairs)
    }
}

/// The one value of `field`, if sent (empty counts as not sent: an empty form field).
fn single<'a>(pairs: &'a [(String, String)], field: &str) -> Result<Option<&'a str>, Problem> {
    let mut values = pairs
        .iter()
        .filter(|(name, value)| name == field && !value.is_empty())
        .map(|(_, value)| value.as_str());
    match (values.next(), values.next()) {
        (Some(a), Some(b)) if a != b => Err(bad(field, "sent several times; send one value")),
        (first, _) => Ok(first),
    }
}

/// A name filter: at most [`MAX_NAME`] bytes, without control characters.
pub(crate) fn name(field: &str, value: &str) -> Result<String, Problem> {
    if value.len() > MAX_NAME {
        return Err(bad(
            field,
            format!("is {} bytes long; the most is {MAX_NAME}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(field, "holds control characters"));
    }
    Ok(value.to_owned())
}

/// What every page's query may say: the format and the notice an action left.
#[derive(Debug, Default)]
pub(crate) struct PageQuery {
    pub(crate) format: Option<Format>,
    pub(crate) notice: Option<Notice>,
}

impl PageQuery {
    const FIELDS: &'static [&'static str] = &["format", "notice", "count"];

    fn from_pairs(pairs: &[(String, String)]) -> Result<Self, Problem> {
        let format = match single(pairs, "format")? {
            None => None,
            Some("json") => Some(Format::Json),
            Some("html") => Some(Format::Html),
            Some(other) => {
                return Err(bad(
                    "format",
                    format!("`{}` is not `json` or `html`", truncate(other, 40)),
                ))
            }
        };
        let count = single(pairs, "count")?
            .map(|c| {
                c.parse::<u64>()
                    .map_err(|_| bad("count", format!("`{}` is not a count", truncate(c, 40))))
            })
            .transpose()?;
        let notice = match single(pairs, "notice")? {
            None => None,
            Some(name) => Some(match name {
                "retried" => Notice::Retried,
                "not-retryable" => Notice::NotRetryable,
                "in-group" => Notice::InGroup,
                "cancelled" => Notice::Cancelled,
                "cancel-requested" => Notice::CancelRequested,
                "already-finished" => Notice::AlreadyFinished,
                "deleted" => Notice::Deleted,
                "not-finished" => Notice::NotFinished,
                "retried-failed" => Notice::RetriedFailed(count.unwrap_or(0)),
                "purged" => Notice::Purged(count.unwrap_or(0)),
                other => {
                    return Err(bad(
                        "notice",
                        format!(
                            "`{}` is not one of {}",
                            truncate(other, 40),
                            Notice::NAMES.join(", ")
                        ),
                    ))
                }
            }),
        };
        Ok(Self { format, notice })
    }

    /// The query of a page other than the task list.
    pub(crate) fn parse(parts: &Parts) -> Result<Self, Problem> {
        Self::from_pairs(&pairs(parts, Self::FIELDS)?)
    }

    /// The format to answer in: `?format=` overrides the `Accept` header; `406` when the
    /// client accepts neither JSON nor HTML.
    pub(crate) fn format(&self, parts: &Parts) -> Result<Format, Problem> {
        self.format
            .or_else(|| negotiate(&parts.headers, &[Format::Json, Format::Html]))
            .ok_or_else(|| Problem::not_acceptable("application/json or text/html"))
    }
}

/// The task list's query: the page's, and the filters.
#[derive(Debug)]
pub(crate) struct ListQuery {
    pub(crate) page: PageQuery,
    pub(crate) job: Option<String>,
    pub(crate) statuses: Vec<TaskStatus>,
    pub(crate) owner: Option<String>,
    pub(crate) after: Option<TaskId>,
    pub(crate) limit: usize,
}

impl ListQuery {
    const FIELDS: &'static [&'static str] = &[
        "format", "notice", "count", "job", "status", "owner", "after", "limit",
    ];

    pub(crate) fn parse(parts: &Parts, default_limit: usize) -> Result<Self, Problem> {
        let pairs = pairs(parts, Self::FIELDS)?;
        let page = PageQuery::from_pairs(&pairs)?;
        let job = single(&pairs, "job")?.map(|j| name("job", j)).transpose()?;
        let owner = single(&pairs, "owner")?
            .map(|o| name("owner", o))
            .transpose()?;
        let mut statuses = Vec::new();
        for (_, value) in pairs.iter().filter(|(n, v)| n == "status" && !v.is_empty()) {
            for one in value.split(',').filter(|s| !s.is_empty()) {
                let status = one.parse::<TaskStatus>().map_err(|_| {
                    bad(
                        "status",
                        format!(
                            "`{}` is not a status; the statuses are {}",
                            truncate(one, 40),
                            TaskStatus::ALL.map(TaskStatus::as_str).join(", ")
                        ),
                    )
                })?;
                if !statuses.contains(&status) {
                    statuses.push(status);
                }
            }
        }
        let after = single(&pairs, "after")?
            .map(|a| {
                a.parse::<TaskId>()
                    .map_err(|_| bad("after", format!("`{}` is not a task id", truncate(a, 40))))
            })
            .transpose()?;
        let limit = match single(&pairs, "limit")? {
            None => default_limit,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(bad(
                        "limit",
                        format!(
                            "`{}` is not a number of tasks from 1 to {MAX_PAGE_SIZE}",
                            truncate(l, 40)
                        ),
                    ))
                }
            },
        };
        Ok(Self {
            page,
            job,
            statuses,
            owner,
            after,
            limit,
        })
    }

    /// The store's query: one task more than shown, to know whether a next page exists.
    pub(crate) fn task_query(&self) -> TaskQuery {
        TaskQuery {
            job: self.job.clone(),
            statuses: self.statuses.clone(),
            owner: self.owner.clone(),
            after: self.after,
            limit: self.limit + 1,
            ..TaskQuery::default()
        }
    }

    /// The list's URL with these filters, starting after `after` (`None`: the first page).
    pub(crate) fn link(&self, base: &str, after: Option<TaskId>, default_limit: usize) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(job) = &self.job {
            query.append_pair("job", job);
        }
        if !self.statuses.is_empty() {
            let statuses: Vec<&str> = self.statuses.iter().map(|s| s.as_str()).collect();
            query.append_pair("status", &statuses.join(","));
        }
        if let Some(owner) = &self.owner {
            query.append_pair("owner", owner);
        }
        if self.limit != default_limit {
            query.append_pair("limit", &self.limit.to_string());
        }
        if let Some(after) = after {
            query.append_pair("after", &after.to_string());
        }
        let query = query.finish();
        if query.is_empty() {
            format!("{base}/tasks")
        } else {
            format!("{base}/tasks?{query}")
        }
    }
}

/// The fields of an action's form body, and the token it carries (form field or
/// `X-CSRF-Token` header).
pub(crate) struct ActionForm {
    pub(crate) token: Option<String>,
    pub(crate) job: Option<String>,
}

impl ActionForm {
    pub(crate) fn parse(parts: &Parts, body: &[u8]) -> Result<Self, Problem> {
        let pairs = form_pairs(body)?;
        let header = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let token = match header {
            Some(token) => Some(token),
            None => single(&pairs, super::csrf::FIELD)?.map(str::to_owned),
        };
        let job = single(&pairs, "job")?.map(|j| name("job", j)).transpose()?;
        Ok(Self { token, job })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> Parts {
        http::Request::get(uri).body(()).unwrap().into_parts().0
    }

    #[test]
    fn list_queries_parse_and_link_back() {
        let id = TaskId::new();
        let q = ListQuery::parse(
            &parts(&format!(
                "/tasks?job=a+b&status=failed,cancelled&status=failed&owner=&after={id}&limit=20"
            )),
            50,
        )
        .unwrap();
        assert_eq!(q.job.as_deref(), Some("a b"));
        assert_eq!(q.statuses, [TaskStatus::Failed, TaskStatus::Cancelled]);
        assert_eq!(q.owner, None);
        assert_eq!(q.after, Some(id));
        assert_eq!(q.limit, 20);
        assert_eq!(
            q.link("/admin", None, 50),
            "/admin/tasks?job=a+b&status=failed%2Ccancelled&limit=20"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        for (uri, field) in [
            ("/tasks?status=done", "`status`"),
            ("/tasks?limit=0", "`limit`"),
            ("/tasks?limit=501", "`limit`"),
            ("/tasks?after=x", "`after`"),
            ("/tasks?job=a&job=b", "`job`"),
            ("/tasks?format=xml", "`format`"),
            ("/tasks?notice=hello", "`notice`"),
            ("/tasks?bogus=1", "`bogus`"),
            ("/tasks?job=%FF", "`job`"),
        ] {
            let err = ListQuery::parse(&parts(uri), 50).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{uri}");
            let body = format!("{err:?}");
            assert!(body.contains(field), "{uri}: {body}");
        }
    }
}
