//! `/api/im/files/*`: the Prismer SDK's upload flow (presign → upload → confirm, or init → parts
//! → complete for large files), quota, types, delete, and the download every face links to.
//! The upload URLs the presign and init calls hand out are relative: the SDK sends them to the
//! same server with its token.

use super::ok;
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UnusedBody};
use crate::files::{body_stream, field_stream, multipart_error, unsatisfied, MULTIPART_OVERHEAD};
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use imsync_core::model::User;
use imsync_core::Error;
use imsync_service::files::{content_url, FileRecord, NewFile, INLINE_TYPES, PART_BYTES};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnnounceBody {
    file_name: String,
    file_size: i64,
    #[serde(default)]
    mime_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadRef {
    upload_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartRef {
    part_number: u32,
    etag: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompleteBody {
    upload_id: String,
    parts: Vec<PartRef>,
}

/// A confirmed upload as the SDK's `upload()` returns it.
fn confirmed(f: &FileRecord) -> Value {
    json!({
        "uploadId": f.id,
        "cdnUrl": content_url(&f.id),
        "fileName": f.name,
        "fileSize": f.size,
        "mimeType": f.mime,
        "createdAt": imsync_core::time::rfc3339(f.created_at),
    })
}

/// The file routes. Uploads have their own body limit: the file size limit, not the JSON one.
pub fn router(max_file_bytes: u64) -> Router<AppState> {
    let upload_limit = usize::try_from(max_file_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_OVERHEAD);
    Router::new()
        .route("/api/im/files/presign", post(presign))
        .route("/api/im/files/confirm", post(confirm))
        .route("/api/im/files/upload/init", post(init))
        .route("/api/im/files/upload/complete", post(complete))
        .route(
            "/api/im/files/upload/{id}",
            post(upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/api/im/files/upload/{id}/parts/{n}", put(upload_part))
        .route("/api/im/files/quota", get(quota))
        .route("/api/im/files/types", get(types))
        .route("/api/im/files/{id}", delete(remove))
        .route("/api/im/files/{id}/content", get(content))
}

async fn presign(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<AnnounceBody>,
) -> ApiResult<Response> {
    let up = state.service.announce_file(&me, new_file(b), false).await?;
    let id = &up.file.id;
    Ok(ok(json!({
        "uploadId": id,
        "url": format!("/api/im/files/upload/{id}"),
        "fields": {},
    })))
}

fn new_file(b: AnnounceBody) -> NewFile {
    NewFile {
        name: b.file_name,
        size: b.file_size,
        mime: b.mime_type,
    }
}

/// The body of a presigned upload: multipart with the file in the field `file`.
async fn upload(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    mut form: Multipart,
) -> ApiResult<Response> {
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        if field.name() == Some("file") {
            let f = state
                .service
                .upload_file(&me, &id, field_stream(field))
                .await?;
            return Ok(ok(json!({ "uploadId": f.id, "fileSize": f.size })));
        }
    }
    Err(Error::param("The form has no field named file").into())
}

async fn confirm(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<UploadRef>,
) -> ApiResult<Response> {
    let f = state.service.confirm_file(&me, &b.upload_id).await?;
    Ok(ok(confirmed(&f)))
}

async fn init(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<AnnounceBody>,
) -> ApiResult<Response> {
    let up = state.service.announce_file(&me, new_file(b), true).await?;
    let id = &up.file.id;
    let parts: Vec<Value> = (1..=up.parts)
        .map(|n| json!({ "partNumber": n, "url": format!("/api/im/files/upload/{id}/parts/{n}") }))
        .collect();
    Ok(ok(json!({
        "uploadId": id,
        "partSize": PART_BYTES,
        "parts": parts,
    })))
}

/// One part's raw bytes; the answer's `ETag` goes into the completion, as with S3.
async fn upload_part(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path((id, n)): Path<(String, u32)>,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let etag = state
        .service
        .upload_part(&me, &id, n, body_stream(body))
        .await?;
    let mut resp = ok(json!({ "partNumber": n, "etag": etag }));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

async fn complete(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<CompleteBody>,
) -> ApiResult<Response> {
    let parts = b
        .parts
        .into_iter()
        .map(|p| (p.part_number, p.etag))
        .collect();
    let f = state
        .service
        .complete_multipart(&me, &b.upload_id, parts)
        .await?;
    Ok(ok(confirmed(&f)))
}

async fn quota(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<Response> {
    let u = state.service.file_usage(&me).await?;
    Ok(ok(json!({
        "tier": "self-hosted",
        "used": u.used,
        // No per-user quota: only the size of each file is limited.
        "limit": null,
        "fileCount": u.count,
        "maxFileSize": state.service.max_file_bytes(),
    })))
}

async fn types(State(state): State<AppState>, Auth(_): Auth) -> ApiResult<Response> {
    Ok(ok(json!({
        // Any type may be uploaded; only these are ever shown inline.
        "allowedMimeTypes": ["*/*"],
        "inlineMimeTypes": INLINE_TYPES,
        "maxFileSize": state.service.max_file_bytes(),
    })))
}

async fn remove(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    state.service.delete_file(&me, &id).await?;
    Ok(ok(json!({ "uploadId": id, "deleted": true })))
}

async fn content(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&state, &me, &id, &headers, |e| {
        crate::error::Face::Native.error(e)
    })
    .await
}

/// A download for any face: the file if the caller may read it, else the error as the face
/// renders it.
pub async fn serve(
    state: &AppState,
    me: &User,
    id: &str,
    headers: &HeaderMap,
    render: impl Fn(Error) -> Response,
) -> Response {
    let d = match state.service.open_file(me, id).await {
        Ok(d) => d,
        Err(e) => return render(e),
    };
    let len = d.file.size as u64;
    match crate::files::download(d, headers).await {
        Ok(r) => r.into_response(),
        Err(e) => unsatisfied(render(e), Some(len)),
    }
}
