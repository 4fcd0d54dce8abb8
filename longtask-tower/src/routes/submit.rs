//! `POST /`: submitting a task, from JSON or an HTML form, with an optional idempotency key,
//! refusing forms posted from other sites.

use std::time::Duration;

use bytes::Bytes;
use http::{header, request::Parts, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use longtask_core::{BoxError, Job, SubmitOptions, TaskId, TaskStatus};
use serde::Serialize;

use super::{header_value, respond, see_other, Answer};
use crate::{
    accept::{negotiate, Format},
    problem::{human_size, truncate, Problem},
    service::Config,
    status::Links,
};

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

impl<J: Job> Config<J> {
    pub(super) async fn submit<B>(&self, parts: &Parts, body: B) -> Answer
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
            // The core scopes keys by owner: no key sent by one owner can name another's task.
            options = options.idempotency_key(key);
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
        read_body(parts, body, self.body_limit, self.body_timeout).await
    }
}

/// Reads a request body of at most `limit` bytes (`413` past it, whether declared by
/// `Content-Length` or not), arriving in full within `timeout` (`408` after it).
pub(crate) async fn read_body<B>(
    parts: &Parts,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Problem>
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
                human_size(limit)
            ),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(timeout, Limited::new(body, limit).collect());
    let Ok(read) = read.await else {
        return Err(Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive in full within {} s (set with \
                 `with_body_timeout`); send the whole body at once",
                timeout.as_secs_f64()
            ),
        ));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(too_large()),
        Err(err) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("could not read the request body: {err}"),
        )),
    }
}

/// Refuses a request a browser sent on behalf of another site: a form post (a "simple"
/// request, which no CORS preflight guards) from a page elsewhere would otherwise submit or
/// cancel tasks with the visitor's cookies. Browsers say where a request comes from in
/// `Sec-Fetch-Site`; older ones only in `Origin`, compared with the host asked for (a request
/// with an `Origin` but no host to compare it with is refused). Requests without either
/// (programs, curl) pass.
pub(crate) fn refuse_cross_site(parts: &Parts) -> Result<(), Problem> {
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
        // Nothing to compare the origin with: it cannot be shown to be this site.
        return refused("a page whose site cannot be checked (the request names no Host)");
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
pub(crate) fn form_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, Problem> {
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
