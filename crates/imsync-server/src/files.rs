//! File transfer for every face: the download (streamed from the file store, with single `Range`
//! requests, inline only for sniffed images, an attachment otherwise) and the streams the
//! upload handlers hand to the service.

use crate::serve::{BodyClock, BodyTimedOut, BODY_TIMED_OUT};
use axum::body::{Body, Bytes};
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt, TryStreamExt};
use imsync_core::{Error, ErrorCode, Result};
use imsync_service::files::FileDownload;

/// Room for a multipart request's boundaries and text fields beyond the file itself.
pub const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// The layer of every route that takes an upload: its body is timed per chunk, not as a whole
/// (see [`crate::serve::BodyClock`]).
pub async fn upload_clock(req: Request, next: Next) -> Response {
    if let Some(clock) = req.extensions().get::<BodyClock>() {
        clock.per_progress();
    }
    next.run(req).await
}

/// Whether `e` (or what caused it) is the body clock running out.
fn stalled(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<BodyTimedOut>() || c.to_string().contains(BODY_TIMED_OUT) {
            return true;
        }
        cause = c.source();
    }
    false
}

fn stall_error() -> Error {
    Error::new(
        ErrorCode::RequestTimeout,
        "The upload stalled: no bytes arrived within the body timeout",
    )
}

/// A request body as the service reads uploads.
pub fn body_stream(body: Body) -> impl Stream<Item = Result<Bytes>> + Send {
    body.into_data_stream().map_err(|e| match stalled(&e) {
        true => stall_error(),
        false => Error::invalid(format!("The upload was cut off: {e}")),
    })
}

/// One multipart field's bytes as the service reads uploads.
pub fn field_stream<'a>(field: Field<'a>) -> impl Stream<Item = Result<Bytes>> + Send + 'a {
    field.map_err(multipart_error)
}

pub fn multipart_error(e: MultipartError) -> Error {
    if stalled(&e) {
        return stall_error();
    }
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(
            ErrorCode::PayloadTooLarge,
            "The upload is larger than allowed",
        )
    } else {
        Error::invalid(format!(
            "Could not read the multipart body: {}",
            e.body_text()
        ))
    }
}

/// `filename*` of RFC 6266 (UTF-8, percent-encoded) with a plain ASCII `filename` before it for
/// old clients.
fn disposition(kind: &str, name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// The one byte range to send, `None` for the whole file. A range that cannot be parsed is
/// ignored, as HTTP allows; several ranges are answered with the whole file.
fn range_of(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let unsatisfiable = || {
        Error::new(
            ErrorCode::RangeNotSatisfiable,
            format!("The range is outside the file's {len} bytes"),
        )
    };
    use http_range_header::RangeUnsatisfiableError as R;
    let ranges = match http_range_header::parse_range_header(value) {
        Ok(parsed) => parsed.validate(len),
        Err(e) => Err(e),
    };
    match ranges {
        Ok(r) if r.len() == 1 => Ok(Some((*r[0].start(), *r[0].end()))),
        Ok(_) => Ok(None),
        Err(R::Unsatisfiable | R::Rejected(_)) => Err(unsatisfiable()),
        Err(_) => Ok(None),
    }
}

/// Streams a file the caller may read; errors come back for the face to render (a 416 also
/// carries `Content-Range`, as the caller must set it on the face's error: see [`unsatisfied`]).
pub async fn download(d: FileDownload, headers: &HeaderMap) -> Result<Response> {
    let len = d.file.size as u64;
    let range = range_of(headers, len)?;
    let (status, count) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, b - a + 1),
        None => (StatusCode::OK, len),
    };
    let bytes = d.read(range).await.inspect_err(|e| {
        if e.code == ErrorCode::NotFound {
            tracing::warn!(id = %d.file.id, "a confirmed file's bytes are missing");
        }
    })?;
    let body = Body::from_stream(bytes);
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    let (kind, mime) = if d.file.inline_ok {
        ("inline", d.file.mime.as_str())
    } else {
        ("attachment", d.file.mime.as_str())
    };
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_DISPOSITION, disposition(kind, &d.file.name));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A file is never a page: nothing in it runs, even if a browser is talked into rendering it.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if let Some((a, b)) = range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

/// Adds `Content-Range: bytes */len` to a 416 rendered by a face.
pub fn unsatisfied(mut resp: Response, len: Option<u64>) -> Response {
    if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
        if let Some(v) = len.and_then(|l| HeaderValue::from_str(&format!("bytes */{l}")).ok()) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// A text field's value, at most `max` bytes.
pub async fn text_field(field: Field<'_>, max: usize) -> Result<String> {
    let mut out = Vec::new();
    let mut s = std::pin::pin!(field_stream(field));
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
        if out.len() > max {
            return Err(Error::param("a form field is too long"));
        }
    }
    String::from_utf8(out).map_err(|_| Error::param("a form field is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, len: u64) -> Result<Option<(u64, u64)>> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        range_of(&h, len)
    }

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(range("bytes=90-", 100).unwrap(), Some((90, 99)));
        assert_eq!(range("bytes=-5", 100).unwrap(), Some((95, 99)));
        assert_eq!(range("bytes=0-1,5-6", 100).unwrap(), None);
        assert_eq!(range("pages=1", 100).unwrap(), None);
        assert_eq!(
            range("bytes=200-300", 100).unwrap_err().code,
            ErrorCode::RangeNotSatisfiable
        );
    }

    #[test]
    fn names_in_the_disposition_are_quoted_and_encoded() {
        let v = disposition("attachment", "a \"b\"\u{e9}.txt");
        assert_eq!(
            v.to_str().unwrap(),
            "attachment; filename=\"a _b__.txt\"; filename*=UTF-8''a%20%22b%22%C3%A9.txt"
        );
    }
}
