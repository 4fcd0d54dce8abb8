//! What a command ends with when it fails: one line for stderr and an exit status, with any
//! password from the backend URL masked.

use std::{error::Error as StdError, process::ExitCode};

/// The exit statuses (documented in `--help` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Anything not covered below.
    Other = 1,
    /// A bad option, a malformed URL or id.
    Usage = 2,
    /// No such task.
    NotFound = 3,
    /// The backend cannot be reached or opened.
    Unreachable = 4,
    /// `watch`: the task failed.
    TaskFailed = 5,
    /// `watch`: the task was cancelled.
    TaskCancelled = 6,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit as u8)
    }
}

/// A failed command: what to tell the user and how to exit.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    /// A failure to open the backend.
    pub(crate) fn connecting(err: &longtask::Error) -> Self {
        match err {
            longtask::Error::InvalidInput(message) => {
                Self::new(Exit::Usage, format!("bad backend URL: {message}"))
            }
            _ => Self::new(
                Exit::Unreachable,
                format!("cannot open the backend: {}", chain(err)),
            ),
        }
    }

    /// A failure of an operation on an open backend.
    pub(crate) fn operating(err: &longtask::Error) -> Self {
        match err {
            longtask::Error::NotFound(_) => Self::new(Exit::NotFound, err.to_string()),
            longtask::Error::InvalidInput(_) => Self::new(Exit::Usage, err.to_string()),
            longtask::Error::Backend { .. } if unreachable(err) => Self::new(
                Exit::Unreachable,
                format!("cannot reach the backend: {}", chain(err)),
            ),
            longtask::Error::Backend { .. } => {
                let message = chain(err);
                let hint =
                    if message.contains("no such table") || message.contains("does not exist") {
                        " (has `longtask migrate` been run on this backend?)"
                    } else {
                        ""
                    };
                Self::new(Exit::Other, format!("{message}{hint}"))
            }
            _ => Self::new(Exit::Other, chain(err)),
        }
    }
}

impl From<longtask::Error> for Failure {
    fn from(err: longtask::Error) -> Self {
        Self::operating(&err)
    }
}

/// The error and its sources on one line, each cause once (a backend error by what the
/// backend was doing, without the "backend error" prefix: the line says it already).
pub(crate) fn chain(err: &(dyn StdError + 'static)) -> String {
    let text = |err: &(dyn StdError + 'static)| match err.downcast_ref::<longtask::Error>() {
        Some(longtask::Error::Backend { message, .. }) => message.clone(),
        _ => err.to_string(),
    };
    let mut line = text(err);
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = text(cause);
        if !cause_text.is_empty() && !line.contains(&cause_text) {
            line.push_str(": ");
            line.push_str(&cause_text);
        }
        source = cause.source();
    }
    crate::render::clean(&line)
}

/// Whether an error says the backend could not be reached: an I/O error or a timeout anywhere
/// in its sources.
fn unreachable(err: &(dyn StdError + 'static)) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        let text = cause.to_string();
        if text.contains("timed out") || text.contains("Connection refused") {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The passwords in a backend URL, and the URL with them masked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Secrets {
    masked_url: String,
    passwords: Vec<String>,
}

/// What stands for a password.
const MASK: &str = "***";

impl Secrets {
    /// Finds the password of `url`: in its user info (`scheme://user:password@host`, several
    /// hosts allowed) or in a `password=` query parameter (as Postgres allows).
    pub(crate) fn of(url: &str) -> Self {
        let mut passwords = Vec::new();
        if let Some((_, rest)) = url.split_once("://") {
            if let Some(at) = rest.rfind('@') {
                if let Some((_, password)) = rest[..at].split_once(':') {
                    passwords.push(password.to_owned());
                }
            }
        }
        if let Some((_, query)) = url.split_once('?') {
            for pair in query.split('&') {
                if let Some(password) = pair.strip_prefix("password=") {
                    passwords.push(password.to_owned());
                }
            }
        }
        passwords.retain(|p| !p.is_empty());
        for password in passwords.clone() {
            let decoded = percent_decode(&password);
            if decoded != password {
                passwords.push(decoded);
            }
        }
        // Longest first, so that a password containing another is masked whole.
        passwords.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let mut secrets = Self {
            masked_url: String::new(),
            passwords,
        };
        secrets.masked_url = secrets.mask_all(url);
        secrets
    }

    /// The URL with its password masked, for output.
    pub(crate) fn masked_url(&self) -> &str {
        &self.masked_url
    }

    /// `text` with the password masked wherever it appears.
    pub(crate) fn mask(&self, text: &str) -> String {
        self.mask_all(text)
    }

    fn mask_all(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for password in &self.passwords {
            if password.chars().count() >= 3 {
                text = text.replace(password.as_str(), MASK);
            } else {
                // Too short to mask everywhere without garbling the message: only where a URL
                // carries it.
                text = text
                    .replace(&format!(":{password}@"), &format!(":{MASK}@"))
                    .replace(&format!("password={password}"), &format!("password={MASK}"));
            }
        }
        text
    }
}

/// `%XX` escapes decoded (invalid ones kept as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_user_info_query_and_encoded_forms() {
        let secrets = Secrets::of("postgres://ada:s3cr%40t@db:5432/app?password=other1");
        assert_eq!(
            secrets.masked_url(),
            "postgres://ada:***@db:5432/app?password=***"
        );
        assert_eq!(
            secrets.mask("auth failed for s3cr@t"),
            "auth failed for ***"
        );
        let cluster = Secrets::of("redis+cluster://:hunter2@a:1,b:2");
        assert_eq!(cluster.masked_url(), "redis+cluster://:***@a:1,b:2");
        let short = Secrets::of("redis://:ab@host");
        assert_eq!(short.masked_url(), "redis://:***@host");
        assert_eq!(short.mask("abc"), "abc");
        assert_eq!(
            Secrets::of("sqlite://a@b.db").masked_url(),
            "sqlite://a@b.db"
        );
    }

    #[test]
    fn percent_decoding_keeps_broken_escapes() {
        assert_eq!(percent_decode("a%40b%4"), "a@b%4");
        assert_eq!(percent_decode("%zz%"), "%zz%");
    }
}
