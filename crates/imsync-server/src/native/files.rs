//! `/api/im/files/*`: the Prismer SDK's upload flow (presign → upload → confirm, or init → parts
//! → complete for large files), quota, types, delete, and the download every face links to.
//! The upload URLs the presign and init calls hand out are relative: the SDK sends them to the
//! same server with its token.

use super::{ok, Envelope};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UnusedBody};
use crate::files::{
    body_stream, field_stream, multipart_error, unsatisfied, upload_clock, MULTIPART_OVERHEAD,
};
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use imsync_core::model::User;
use imsync_core::{Error, ErrorCode};
use imsync_service::files::{content_url, FileRecord, NewFile, INLINE_TYPES, PART_BYTES};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

/// The file routes' part of the OpenAPI document (they are routed apart from the rest of the
/// native face, for their body limits).
#[derive(OpenApi)]
#[openapi(
    paths(
        presign,
        upload,
        confirm,
        init,
        upload_part,
        complete,
        quota,
        types,
        remove,
        content
    ),
    components(schemas(AnnounceBody, UploadRef, PartRef, CompleteBody, UploadForm))
)]
pub struct FilesDoc;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnnounceBody {
    file_name: String,
    /// In bytes; at most `maxFileSize`.
    file_size: i64,
    /// The declared type; `application/octet-stream` when blank.
    #[serde(default)]
    mime_type: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadRef {
    upload_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartRef {
    part_number: u32,
    etag: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompleteBody {
    upload_id: String,
    /// Every part, in order, with the ETag its upload answered.
    parts: Vec<PartRef>,
}

/// The multipart form of a presigned upload.
#[derive(ToSchema)]
#[allow(dead_code)] // Only its schema is used: the form is read as a stream.
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Presigned {
    upload_id: String,
    /// Where to POST the form (relative to the server).
    url: String,
    /// Form fields to send with the file: none.
    #[schema(value_type = Object)]
    fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Uploaded {
    upload_id: String,
    file_size: i64,
}

/// A confirmed upload as the SDK's `upload()` returns it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmedFile {
    upload_id: String,
    /// The download URL (relative to the server).
    cdn_url: String,
    file_name: String,
    file_size: i64,
    mime_type: String,
    created_at: String,
}

fn confirmed(f: &FileRecord) -> ConfirmedFile {
    ConfirmedFile {
        upload_id: f.id.clone(),
        cdn_url: content_url(&f.id),
        file_name: f.name.clone(),
        file_size: f.size,
        mime_type: f.mime.clone(),
        created_at: imsync_core::time::rfc3339(f.created_at),
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartUrl {
    part_number: u32,
    /// Where to PUT the part's bytes (relative to the server).
    url: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultipartStarted {
    upload_id: String,
    /// The size of every part but the last.
    part_size: u64,
    parts: Vec<PartUrl>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartStored {
    part_number: u32,
    /// The part's MD5 in quotes, as S3 gives it (also in the `ETag` header).
    etag: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    tier: &'static str,
    /// Bytes stored by the caller.
    used: i64,
    /// Always null: there is no per-user quota, only the size of each file is limited.
    #[schema(required = true)]
    limit: Option<i64>,
    file_count: i64,
    max_file_size: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileTypes {
    /// Any type may be uploaded.
    allowed_mime_types: Vec<&'static str>,
    /// The only types ever served inline (when the bytes are that image too).
    inline_mime_types: Vec<&'static str>,
    max_file_size: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileDeleted {
    upload_id: String,
    /// Always true.
    deleted: bool,
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
            post(upload)
                .layer(DefaultBodyLimit::max(upload_limit))
                .layer(from_fn(upload_clock)),
        )
        .route(
            "/api/im/files/upload/{id}/parts/{n}",
            put(upload_part).layer(from_fn(upload_clock)),
        )
        .route("/api/im/files/quota", get(quota))
        .route("/api/im/files/types", get(types))
        .route("/api/im/files/{id}", delete(remove))
        .route("/api/im/files/{id}/content", get(content))
}

#[utoipa::path(post, path = "/api/im/files/presign", operation_id = "presignUpload", request_body = AnnounceBody,
    responses((status = 200, description = "An upload announced: POST its form to `url`", body = Envelope<Presigned>),
        (status = 413, description = "Larger than the file size limit")))]
async fn presign(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<AnnounceBody>,
) -> ApiResult<Response> {
    let up = state.service.announce_file(&me, new_file(b), false).await?;
    let id = &up.file.id;
    Ok(ok(Presigned {
        upload_id: id.clone(),
        url: format!("/api/im/files/upload/{id}"),
        fields: serde_json::Map::new(),
    }))
}

fn new_file(b: AnnounceBody) -> NewFile {
    NewFile {
        name: b.file_name,
        size: b.file_size,
        mime: b.mime_type,
    }
}

/// The body of a presigned upload: multipart with the file in the field `file`.
#[utoipa::path(post, path = "/api/im/files/upload/{id}", operation_id = "uploadFile", params(("id" = String, Path,)),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "Stored; confirm it next", body = Envelope<Uploaded>),
        (status = 413, description = "Larger than announced or than the limit")))]
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
            return Ok(ok(Uploaded {
                upload_id: f.id,
                file_size: f.size,
            }));
        }
    }
    Err(Error::param("The form has no field named file").into())
}

#[utoipa::path(post, path = "/api/im/files/confirm", operation_id = "confirmUpload", request_body = UploadRef,
    responses((status = 200, description = "Confirmed (again: the same answer)", body = Envelope<ConfirmedFile>)))]
async fn confirm(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<UploadRef>,
) -> ApiResult<Response> {
    let f = state.service.confirm_file(&me, &b.upload_id).await?;
    Ok(ok(confirmed(&f)))
}

#[utoipa::path(post, path = "/api/im/files/upload/init", operation_id = "startMultipartUpload", request_body = AnnounceBody,
    responses((status = 200, description = "An upload in parts announced: PUT each part to its `url`", body = Envelope<MultipartStarted>),
        (status = 413, description = "Larger than the file size limit")))]
async fn init(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<AnnounceBody>,
) -> ApiResult<Response> {
    let up = state.service.announce_file(&me, new_file(b), true).await?;
    let id = &up.file.id;
    let parts = (1..=up.parts)
        .map(|n| PartUrl {
            part_number: n,
            url: format!("/api/im/files/upload/{id}/parts/{n}"),
        })
        .collect();
    Ok(ok(MultipartStarted {
        upload_id: id.clone(),
        part_size: PART_BYTES,
        parts,
    }))
}

/// One part's raw bytes; the answer's `ETag` goes into the completion, as with S3.
#[utoipa::path(put, path = "/api/im/files/upload/{id}/parts/{n}", operation_id = "uploadPart",
    params(("id" = String, Path,), ("n" = u32, Path, description = "The part number, from 1")),
    request_body(content = String, content_type = "application/octet-stream", description = "The part's bytes"),
    responses((status = 200, description = "Stored", body = Envelope<PartStored>),
        (status = 400, description = "Not the part's size, or no such part"),
        (status = 408, description = "No bytes arrived within the body timeout: the connection is closed"),
        (status = 413, description = "A Content-Length over the part size: refused before the body, the connection closed")))]
async fn upload_part(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path((id, n)): Path<(String, u32)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > PART_BYTES) {
        // Refused on its head: the body is never read, so the connection cannot go on.
        let e = Error::new(
            ErrorCode::PayloadTooLarge,
            format!("A part has at most {PART_BYTES} bytes"),
        );
        let mut resp = ApiError::from(e).into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(resp);
    }
    let etag = state
        .service
        .upload_part(&me, &id, n, body_stream(body))
        .await?;
    let header = HeaderValue::from_str(&etag);
    let mut resp = ok(PartStored {
        part_number: n,
        etag,
    });
    if let Ok(v) = header {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

#[utoipa::path(post, path = "/api/im/files/upload/complete", operation_id = "completeMultipartUpload", request_body = CompleteBody,
    responses((status = 200, description = "Joined and confirmed", body = Envelope<ConfirmedFile>),
        (status = 400, description = "Parts missing, out of order, or an ETag that does not match")))]
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

#[utoipa::path(get, path = "/api/im/files/quota", operation_id = "fileQuota",
    responses((status = 200, description = "The caller's storage use", body = Envelope<Quota>)))]
async fn quota(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<Response> {
    let u = state.service.file_usage(&me).await?;
    Ok(ok(Quota {
        tier: "self-hosted",
        used: u.used,
        limit: None,
        file_count: u.count,
        max_file_size: state.service.max_file_bytes(),
    }))
}

#[utoipa::path(get, path = "/api/im/files/types", operation_id = "fileTypes",
    responses((status = 200, description = "What may be uploaded", body = Envelope<FileTypes>)))]
async fn types(State(state): State<AppState>, _auth: Auth) -> ApiResult<Response> {
    Ok(ok(FileTypes {
        allowed_mime_types: vec!["*/*"],
        inline_mime_types: INLINE_TYPES.to_vec(),
        max_file_size: state.service.max_file_bytes(),
    }))
}

#[utoipa::path(delete, path = "/api/im/files/{id}", operation_id = "deleteFile", params(("id" = String, Path,)),
    responses((status = 200, description = "Deleted with its bytes; messages that carried it stay", body = Envelope<FileDeleted>),
        (status = 404, description = "Not the caller's file")))]
async fn remove(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    state.service.delete_file(&me, &id).await?;
    Ok(ok(FileDeleted {
        upload_id: id,
        deleted: true,
    }))
}

#[utoipa::path(get, path = "/api/im/files/{id}/content", operation_id = "downloadFile",
    params(("id" = String, Path,), ("Range" = Option<String>, Header, description = "One byte range")),
    responses((status = 200, description = "The file, inline for sniffed images, an attachment otherwise", content_type = "application/octet-stream", body = String),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = String),
        (status = 403, description = "The caller may not read the conversation it was sent in"),
        (status = 404, description = "No such file, or not sent to the caller"),
        (status = 416, description = "The range is outside the file")))]
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
