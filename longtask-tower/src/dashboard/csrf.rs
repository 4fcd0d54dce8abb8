//! The dashboard's CSRF tokens: a signed double-submit cookie.
//!
//! Each browser gets a random value in an `HttpOnly`, `SameSite=Strict` cookie the first time
//! it loads a page; every form of the page carries the HMAC-SHA-256 of that value under the
//! dashboard's key (random per [`Dashboard`](crate::Dashboard) unless given). A post is accepted
//! only with the cookie and the matching token: another site can make a browser post a form,
//! but it can neither read the cookie nor compute the token. This comes on top of the
//! cross-site refusal (`Sec-Fetch-Site` / `Origin`), which stops such posts first.

use std::fmt;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use hmac::{Hmac, Mac};
use http::{header, request::Parts, HeaderValue, StatusCode};
use rand::RngCore as _;
use sha2::Sha256;

use crate::problem::Problem;

/// The cookie holding a browser's random value.
pub(crate) const COOKIE: &str = "longtask_dashboard_csrf";

/// The form field (and `X-CSRF-Token` header) holding the token.
pub(crate) const FIELD: &str = "csrf";

/// Random bytes in a cookie value.
const VALUE_BYTES: usize = 32;

/// What a token signs, before the cookie's value: tokens of this use only.
const CONTEXT: &[u8] = b"longtask-dashboard-csrf\0";

/// The key tokens are signed with.
#[derive(Clone)]
pub(crate) struct CsrfKey([u8; 32]);

impl fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    /// A fresh random key.
    pub(crate) fn random() -> Self {
        let mut key = [0; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(key)
    }

    /// A key derived from a secret shared by several processes.
    pub(crate) fn from_secret(secret: &[u8]) -> Self {
        use sha2::Digest as _;
        let digest = Sha256::new()
            .chain_update(b"longtask-dashboard-key\0")
            .chain_update(secret)
            .finalize();
        Self(digest.into())
    }

    fn mac(&self, value: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length: this never fails.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(CONTEXT);
        mac.update(value.as_bytes());
        mac
    }

    /// The token for a cookie value.
    pub(crate) fn token(&self, value: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(value).finalize().into_bytes())
    }

    /// Whether `token` is the one for `value` (compared in constant time).
    fn verify(&self, value: &str, token: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        self.mac(value).verify_slice(&bytes).is_ok()
    }

    /// Refuses a post without the cookie, without a token, or with a token of another cookie
    /// or another dashboard.
    pub(crate) fn check(&self, parts: &Parts, token: Option<&str>) -> Result<(), Problem> {
        let refused = |why: &str| {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{why}; actions must be posted from a page of this dashboard: reload the page \
                     and try again"
                ),
            ))
        };
        let Some(value) = cookie_value(parts) else {
            return refused("the request carries no CSRF cookie (`longtask_dashboard_csrf`)");
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return refused("the request carries no CSRF token (form field `csrf`)");
        };
        if self.verify(value, token) {
            Ok(())
        } else {
            refused("the CSRF token does not match this browser's cookie")
        }
    }
}

/// A new random cookie value.
pub(crate) fn new_value() -> String {
    let mut bytes = [0; VALUE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `value` looks like one this module made (43 base64url characters).
fn well_formed(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The request's CSRF cookie value, if it sent a well-formed one.
pub(crate) fn cookie_value(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| well_formed(value))
}

/// The `Set-Cookie` header for a new value, scoped to the dashboard's path.
pub(crate) fn set_cookie(value: &str, base: &str) -> Option<HeaderValue> {
    let path = if base.is_empty() { "/" } else { base };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path={path}; HttpOnly; SameSite=Strict"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(cookie: Option<&str>) -> Parts {
        let mut request = http::Request::post("/purge");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_token_verifies_only_with_its_cookie_and_key() {
        let key = CsrfKey::random();
        let value = new_value();
        let token = key.token(&value);
        let cookie = format!("other=1; {COOKIE}={value}");
        assert!(key.check(&parts(Some(&cookie)), Some(&token)).is_ok());
        assert!(key.check(&parts(None), Some(&token)).is_err());
        assert!(key.check(&parts(Some(&cookie)), None).is_err());
        assert!(key.check(&parts(Some(&cookie)), Some("")).is_err());
        let other = new_value();
        let cookie_other = format!("{COOKIE}={other}");
        assert!(key
            .check(&parts(Some(&cookie_other)), Some(&token))
            .is_err());
        assert!(CsrfKey::random()
            .check(&parts(Some(&cookie)), Some(&token))
            .is_err());
        assert!(key
            .check(&parts(Some(&cookie)), Some("%%not base64%%"))
            .is_err());
    }

    #[test]
    fn shared_secrets_give_the_same_tokens() {
        let value = new_value();
        assert_eq!(
            CsrfKey::from_secret(b"s3cret").token(&value),
            CsrfKey::from_secret(b"s3cret").token(&value)
        );
        assert_ne!(
            CsrfKey::from_secret(b"s3cret").token(&value),
            CsrfKey::from_secret(b"other").token(&value)
        );
    }

    #[test]
    fn malformed_cookies_are_ignored() {
        assert!(cookie_value(&parts(Some(&format!("{COOKIE}=short")))).is_none());
        assert!(cookie_value(&parts(Some(&format!("{COOKIE}={}", "é".repeat(20))))).is_none());
        let value = new_value();
        assert_eq!(
            cookie_value(&parts(Some(&format!("{COOKIE}={value}")))),
            Some(value.as_str())
        );
    }
}
