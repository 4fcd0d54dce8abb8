//! `longtask dashboard`: serves the operators' dashboard (`longtask::http::Dashboard`) for the
//! backend URL given, until Ctrl-C.
//!
//! Who may use it: the dashboard shows every task's parameters and outputs and its actions
//! retry, cancel and delete tasks, so it never opens to the network by accident.
//!
//! - On a loopback address (the default) only requests that name a loopback host
//!   (`127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`) are admitted: a web page elsewhere that
//!   reaches the port through DNS rebinding names its own host, and gets `403`.
//! - A non-loopback address is refused unless `--token` (every request then carries it) or
//!   `--allow-anyone` (something else guards it) is given; `--allow-anyone` also admits any
//!   host name, for a proxy in front.
//! - `--token`: every request must carry `Authorization: Bearer <token>`, or Basic credentials
//!   with the token as password (so that a browser can log in); else `401`.

use std::{convert::Infallible, net::SocketAddr, process::ExitCode, sync::Arc};

use base64::Engine as _;
use http::{header, request::Parts, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use longtask::http::{Dashboard, ResponseBody};
use sha2::{Digest, Sha256};

use super::Context;
use crate::{
    cli::DashboardArgs,
    error::{Exit, Failure},
    server,
};

/// Who may use the dashboard, as decided from the command line and the bound address.
#[derive(Debug)]
struct Access {
    /// `Some(port)`: admit only requests naming a loopback host with this port.
    loopback_port: Option<u16>,
    /// The SHA-256 of `--token`.
    token: Option<[u8; 32]>,
    /// `--prefix`, normalised (`""` for none).
    prefix: String,
}

impl Access {
    /// Whether the request names a host the dashboard answers for.
    fn admits_host(&self, parts: &Parts) -> bool {
        let Some(port) = self.loopback_port else {
            return true;
        };
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str));
        host.is_some_and(|host| is_loopback_host(host, port))
    }

    /// Whether the request carries the token (always, when there is none).
    fn admits_token(&self, parts: &Parts) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(presented_token);
        given.is_some_and(|given| same_digest(&Sha256::digest(given.as_bytes()).into(), expected))
    }

    /// The answer the CLI gives itself, before the dashboard: `403` to a request naming a
    /// foreign host, `401` to one without the token, `404` outside the prefix. (The
    /// dashboard's authorization hook checks the host and the token again.)
    fn gate(&self, parts: &Parts) -> Option<Response<ResponseBody>> {
        if !self.admits_host(parts) {
            let port = self.loopback_port.unwrap_or_default();
            return Some(problem(
                StatusCode::FORBIDDEN,
                &format!(
                    "this dashboard listens on a loopback address and answers requests to \
                     127.0.0.1:{port}, localhost:{port} or [::1]:{port} only; to admit other \
                     host names (a proxy in front), start it with --allow-anyone"
                ),
            ));
        }
        if !self.admits_token(parts) {
            let mut response = problem(
                StatusCode::UNAUTHORIZED,
                "this dashboard needs its token: send `Authorization: Bearer <token>`, or give \
                 the token as the password when the browser asks",
            );
            let headers = response.headers_mut();
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"longtask dashboard\""),
            );
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"longtask dashboard\", charset=\"UTF-8\""),
            );
            return Some(response);
        }
        let path = parts.uri.path();
        let inside = self.prefix.is_empty()
            || path
                .strip_prefix(&self.prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if !inside {
            return Some(problem(
                StatusCode::NOT_FOUND,
                &format!("the dashboard is served under {}/", self.prefix),
            ));
        }
        None
    }
}

/// The token of an `Authorization` header: `Bearer <token>`, or the password of
/// `Basic base64(user:password)`.
fn presented_token(value: &str) -> Option<String> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (_user, password) = decoded.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

/// Whether two digests are equal, in a time that does not depend on where they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0_u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Whether `host` (a `Host` header: `name[:port]`, `[v6][:port]`) is a loopback name with
/// `port` (a missing port is 80).
fn is_loopback_host(host: &str, port: u16) -> bool {
    let (name, given_port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        match after {
            "" => (v6, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (v6, Some(p)),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, p)) => (name, Some(p)),
            None => (host, None),
        }
    };
    let port_matches = match given_port {
        None => port == 80,
        Some(p) => p.parse::<u16>().is_ok_and(|p| p == port),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    port_matches && loopback
}

/// A problem document (RFC 9457), as the dashboard answers its own errors.
fn problem(status: StatusCode, detail: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = Response::new(ResponseBody::full(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `http://ADDR/PREFIX/`, with an IPv6 address in brackets.
fn url(addr: SocketAddr, prefix: &str) -> String {
    format!("http://{addr}{prefix}/")
}

/// The shortest `--token` accepted.
const MIN_TOKEN_LEN: usize = 16;

/// Checks `--token` here rather than in clap, whose error would repeat the value on stderr.
fn check_token(token: &str) -> Result<(), Failure> {
    if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "the dashboard token must be at least {MIN_TOKEN_LEN} visible ASCII characters, \
                 without spaces (try `openssl rand -hex 24`)"
            ),
        ));
    }
    Ok(())
}

pub(super) async fn run(args: DashboardArgs, cx: &Context) -> Result<ExitCode, Failure> {
    if let Some(token) = &args.token {
        check_token(token)?;
    }
    let loopback = args.bind.ip().is_loopback();
    if !loopback && !args.allow_anyone && args.token.is_none() {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "refusing to serve the dashboard on {}, which is not a loopback address: anyone \
                 who reaches it could read every task and retry, cancel or delete them. Give \
                 --token <secret> (or LONGTASK_DASHBOARD_TOKEN) to require a secret, or \
                 --allow-anyone if something else guards it (a firewall, an authenticating proxy)",
                args.bind
            ),
        ));
    }
    let client = cx.client().await?;
    let stop = server::stop_signal().map_err(|err| {
        Failure::new(
            Exit::Other,
            format!("cannot listen for Ctrl-C and SIGTERM: {err}"),
        )
    })?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|err| {
            Failure::new(
                Exit::Other,
                format!("cannot listen on {}: {err}", args.bind),
            )
        })?;
    let bound = listener.local_addr().map_err(|err| {
        Failure::new(
            Exit::Other,
            format!("cannot listen on {}: {err}", args.bind),
        )
    })?;
    let prefix = args.prefix.unwrap_or_default();
    let access = Arc::new(Access {
        loopback_port: (loopback && !args.allow_anyone).then_some(bound.port()),
        token: args
            .token
            .as_deref()
            .map(|token| Sha256::digest(token.as_bytes()).into()),
        prefix: prefix.clone(),
    });
    let hook = Arc::clone(&access);
    let dashboard = Dashboard::builder(client)
        .at(&prefix)
        .authorize(move |parts| hook.admits_host(parts) && hook.admits_token(parts))
        .build();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut dashboard = dashboard.clone();
        let access = Arc::clone(&access);
        async move {
            let (parts, body) = request.into_parts();
            if let Some(answer) = access.gate(&parts) {
                return Ok::<_, Infallible>(answer);
            }
            tower::Service::call(&mut dashboard, Request::from_parts(parts, body)).await
        }
    });

    let url = url(bound, &prefix);
    let backend = cx.secrets.masked_url();
    if args.allow_anyone && args.token.is_none() {
        eprintln!(
            "WARNING: --allow-anyone: no authorization. Anyone who can reach {bound} can read \
             every task and retry, cancel or delete them; make sure something else guards it."
        );
    } else if args.allow_anyone {
        eprintln!(
            "warning: --allow-anyone: requests naming any host are admitted (with the token)"
        );
    }
    if !loopback && args.token.is_some() {
        eprintln!(
            "warning: the token travels in clear over plain HTTP on {bound}: put a TLS proxy in \
             front of it, or reach it through an SSH tunnel"
        );
    }
    if cx.json {
        println!(
            "{}",
            serde_json::json!({ "url": url, "backend": backend, "bind": bound.to_string() })
        );
    } else {
        println!("longtask dashboard: {url} (backend {backend}; Ctrl-C to stop)");
    }
    server::serve(listener, service, stop).await;
    if !cx.json {
        println!("stopped");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_with_the_bound_port_are_loopback_hosts() {
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
            "127.1.2.3:8080",
        ] {
            assert!(is_loopback_host(host, 8080), "{host}");
        }
        for host in [
            "127.0.0.1:8081",
            "127.0.0.1",
            "evil.example:8080",
            "localhost.evil.example:8080",
            "10.0.0.1:8080",
            "[::1]",
            "[::1]8080",
            "[::1:8080",
            "127.0.0.1:80:8080",
            "",
            ":8080",
        ] {
            assert!(!is_loopback_host(host, 8080), "{host}");
        }
        assert!(is_loopback_host("localhost", 80));
        assert!(is_loopback_host("[::1]", 80));
    }

    #[test]
    fn the_token_comes_as_bearer_or_as_the_basic_password() {
        assert_eq!(presented_token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(presented_token("bearer  abc ").as_deref(), Some("abc"));
        let basic = base64::engine::general_purpose::STANDARD.encode("ada:s3:cret");
        assert_eq!(
            presented_token(&format!("Basic {basic}")).as_deref(),
            Some("s3:cret")
        );
        assert_eq!(presented_token("Basic !!!"), None);
        assert_eq!(presented_token("Digest abc"), None);
        assert_eq!(presented_token("Bearer"), None);
    }
}
