//! How a finished task's output is served: as JSON (the default), or as a file of its own type.

use bytes::Bytes;
use http::HeaderValue;

/// A task's output served as a file, such as a CSV download: what the hook given to
/// [`JobService::with_result_file`](crate::JobService::with_result_file) returns.
///
/// ```
/// let file = longtask_tower::ResultFile::new("text/csv; charset=utf-8", "day,invoices\n1,40\n")
///     .filename("report-2026-10.csv");
/// ```
#[derive(Debug, Clone)]
pub struct ResultFile {
    pub(crate) content_type: HeaderValue,
    pub(crate) filename: Option<String>,
    pub(crate) body: Bytes,
}

impl ResultFile {
    /// A file of `content_type` (a MIME type; an invalid one is served as
    /// `application/octet-stream`) holding `body`.
    ///
    /// ```
    /// let file = longtask_tower::ResultFile::new("text/plain", "hello");
    /// ```
    pub fn new(content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            content_type: HeaderValue::from_str(content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            filename: None,
            body: body.into(),
        }
    }

    /// Serves the file as a download with this name (`Content-Disposition: attachment`).
    ///
    /// ```
    /// let file = longtask_tower::ResultFile::new("text/csv", "a,b\n").filename("data.csv");
    /// ```
    #[must_use]
    pub fn filename(mut self, name: impl Into<String>) -> Self {
        self.filename = Some(name.into());
        self
    }

    /// The `Content-Disposition` header: the name reduced to safe ASCII for `filename=`, and in
    /// full (percent-encoded UTF-8) for `filename*=`.
    pub(crate) fn disposition(&self) -> Option<HeaderValue> {
        let name = self.filename.as_deref()?;
        let ascii: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ' | '(' | ')') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut encoded = String::new();
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
                encoded.push(char::from(b));
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        HeaderValue::from_str(&format!(
            "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
        ))
        .ok()
    }

    /// The file's name, if it has one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.filename.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_is_safe() {
        let f = ResultFile::new("text/csv", "x").filename("r\"e\r\npört.csv");
        let d = f.disposition().unwrap();
        let d = d.to_str().unwrap();
        assert!(
            d.starts_with("attachment; filename=\"r_e__p_rt.csv\""),
            "{d}"
        );
        assert!(
            d.contains("filename*=UTF-8''r%22e%0D%0Ap%C3%B6rt.csv"),
            "{d}"
        );
    }

    #[test]
    fn bad_content_type_falls_back() {
        let f = ResultFile::new("text/csv\n", "x");
        assert_eq!(f.content_type, "application/octet-stream");
    }
}
