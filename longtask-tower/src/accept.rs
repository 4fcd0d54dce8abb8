//! Content negotiation: which of the offered media types the `Accept` header prefers.

use http::{header, HeaderMap};

/// The representations a route can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Html,
    EventStream,
}

impl Format {
    fn media_type(self) -> (&'static str, &'static str) {
        match self {
            Self::Json => ("application", "json"),
            Self::Html => ("text", "html"),
            Self::EventStream => ("text", "event-stream"),
        }
    }
}

/// The offered format the client prefers, the first offer winning ties; `None` when the client
/// accepts none of them (406). A missing or empty `Accept` header accepts anything.
pub(crate) fn negotiate(headers: &HeaderMap, offers: &[Format]) -> Option<Format> {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return offers.first().copied();
    }
    let mut best: Option<(Format, f32)> = None;
    let mut any_range = false;
    for value in values {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            if media.is_empty() {
                continue;
            }
            any_range = true;
            let q = parts
                .filter_map(|p| {
                    let p = p.trim();
                    // Parameter names are case-insensitive: `Q=0` is `q=0`.
                    p.get(..2)
                        .filter(|name| name.eq_ignore_ascii_case("q="))
                        .and_then(|_| p.get(2..))
                })
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q.is_nan() || q <= 0.0 {
                continue;
            }
            let (kind, sub) = media.split_once('/').unwrap_or((media, ""));
            for (rank, &offer) in offers.iter().enumerate() {
                let (okind, osub) = offer.media_type();
                let matches = (kind == "*" && sub == "*")
                    || (kind.eq_ignore_ascii_case(okind)
                        && (sub == "*" || sub.eq_ignore_ascii_case(osub)));
                // An exact match counts a little more than a wildcard, so that
                // `text/html, */*` picks HTML.
                if !matches {
                    continue;
                }
                let specific = if sub == "*" { 0.0 } else { 0.000_1 };
                #[allow(clippy::cast_precision_loss)]
                let score = q + specific - rank as f32 * 0.000_01;
                if best.is_none_or(|(_, s)| score > s) {
                    best = Some((offer, score));
                }
            }
        }
    }
    if !any_range {
        return offers.first().copied();
    }
    best.map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        h
    }

    const BOTH: &[Format] = &[Format::Json, Format::Html];

    #[test]
    fn browsers_get_html_and_programs_json() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(negotiate(&with(browser), BOTH), Some(Format::Html));
        assert_eq!(negotiate(&with("*/*"), BOTH), Some(Format::Json));
        assert_eq!(negotiate(&HeaderMap::new(), BOTH), Some(Format::Json));
        assert_eq!(
            negotiate(&with("application/json"), BOTH),
            Some(Format::Json)
        );
        assert_eq!(negotiate(&with("text/*"), BOTH), Some(Format::Html));
        assert_eq!(
            negotiate(&with("application/json;q=0.5, text/html"), BOTH),
            Some(Format::Html)
        );
    }

    #[test]
    fn unacceptable_is_none() {
        assert_eq!(negotiate(&with("image/png"), BOTH), None);
        assert_eq!(negotiate(&with("text/html;q=0"), &[Format::Html]), None);
        assert_eq!(negotiate(&with("text/html;Q=0"), &[Format::Html]), None);
        assert_eq!(negotiate(&with("text/html; Q=0.0"), &[Format::Html]), None);
    }
}
