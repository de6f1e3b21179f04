//! TangSengDaoDao uploads: `GET /v1/file/upload?type=&path=` answers where to upload, the client
//! POSTs the file there (multipart field `file`) and gets the `path` to put in its message
//! payload's `url`; `GET /v1/file/preview/{id}` downloads it. The files go to the one file store;
//! a message whose payload names one is linked to it on send, as on every face.

use super::error::{TsddAuth, TsddError, TsddResult};
use super::render::preview_path;
use crate::app::AppState;
use crate::error::Face;
use crate::files::{field_stream, multipart_error};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use imsync_core::Error;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
pub struct UploadQuery {
    #[serde(default)]
    path: String,
    #[serde(default, rename = "type")]
    kind: String,
}

/// The absolute URL of this server as the client reached it.
fn origin(headers: &HeaderMap) -> String {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let host = h("x-forwarded-host")
        .or_else(|| h(header::HOST.as_str()))
        .unwrap_or("localhost");
    let scheme = h("x-forwarded-proto").unwrap_or("http");
    format!("{scheme}://{host}")
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn upload_url(
    TsddAuth(_me): TsddAuth,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
) -> Response {
    let url = format!(
        "{}/v1/file/upload?type={}&path={}",
        origin(&headers),
        encode(&q.kind),
        encode(&q.path)
    );
    Json(json!({ "url": url })).into_response()
}

pub async fn upload(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    Query(q): Query<UploadQuery>,
    mut form: Multipart,
) -> TsddResult<Response> {
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("file") {
            continue;
        }
        // The client's path ends with the name it gave the file.
        let name = field
            .file_name()
            .map(str::to_owned)
            .or_else(|| q.path.rsplit('/').next().map(str::to_owned))
            .unwrap_or_default();
        let mime = field
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_owned();
        let f = state
            .service
            .store_file(&me, &name, &mime, field_stream(field))
            .await?;
        return Ok(Json(json!({ "path": preview_path(&f.id) })).into_response());
    }
    Err(TsddError(Error::param("The form has no field named file")))
}

pub async fn preview(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    crate::native::files::serve(&state, &me, &id, &headers, download_error).await
}

pub async fn preview_named(
    state: State<AppState>,
    me: TsddAuth,
    Path((id, _)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    preview(state, me, Path(id), headers).await
}

/// A refused or missing file answers with its HTTP status (403, 404, 416) in this face's
/// `{msg,status}` shape, rather than the 400 of other client errors.
fn download_error(e: Error) -> Response {
    use axum::http::StatusCode;
    use imsync_core::ErrorCode;
    let status = match e.code {
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        _ => return Face::Tsdd.error(e),
    };
    super::error::with_status(status, &e.message)
}
