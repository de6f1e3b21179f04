//! Rocket.Chat uploads: `POST /api/v1/rooms.upload/{rid}` (multipart: `file`, and optional `msg`,
//! `description`, `tmid`) stores the file in the one file store and sends it as a message in the
//! same request; `GET /file-upload/{id}/{name}` is where its attachments link. The credentials
//! are the face's headers, or the `rc_uid`/`rc_token` cookies the web client sends with links.

use super::auth::RcAuth;
use super::chat::{fresh, send_error};
use super::error::{RcError, RcResult};
use super::{render, success};
use crate::app::AppState;
use crate::error::Face;
use crate::files::{field_stream, multipart_error, text_field};
use axum::extract::{Multipart, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use imsync_service::files::{message_kind, message_metadata};
use imsync_service::NewMessage;
use serde_json::{json, Value};

/// The longest text field of an upload form.
const MAX_TEXT_FIELD: usize = 64 * 1024;

pub async fn rooms_upload(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    Path(rid): Path<String>,
    mut form: Multipart,
) -> RcResult<Response> {
    let (mut file, mut msg, mut description, mut tmid) = (None, None, None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| RcError::from(multipart_error(e)))?
    {
        match field.name() {
            Some("file") if file.is_none() => {
                let name = field.file_name().unwrap_or("file").to_owned();
                let mime = field
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                file = Some(
                    state
                        .service
                        .store_file(&me, &name, &mime, field_stream(field))
                        .await?,
                );
            }
            Some("msg") => msg = Some(text_field(field, MAX_TEXT_FIELD).await?),
            Some("description") => description = Some(text_field(field, MAX_TEXT_FIELD).await?),
            Some("tmid") => tmid = Some(text_field(field, MAX_TEXT_FIELD).await?),
            _ => {}
        }
    }
    let Some(f) = file else {
        return Err(RcError::meteor("error-invalid-file", "Invalid file"));
    };
    let mut metadata = message_metadata(&f);
    if let Some(d) = description.filter(|d| !d.trim().is_empty()) {
        metadata.insert("description".into(), json!(d));
    }
    let new = NewMessage {
        content: msg.unwrap_or_default(),
        kind: Some(message_kind(&f).to_owned()),
        metadata: Some(Value::Object(metadata)),
        parent_id: tmid.filter(|t| !t.is_empty()),
        ..Default::default()
    };
    match state.service.send(&me, &rid, new).await {
        Ok(out) => Ok(success(
            json!({ "message": render::message(&fresh(out.message, &me)) }),
        )),
        Err(e) => {
            // The file was for this message only.
            let _ = state.service.delete_file(&me, &f.id).await;
            Err(send_error(e))
        }
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub async fn file_upload(
    State(state): State<AppState>,
    Path((id, _name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let face = Face::RocketChat;
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (uid, token) = match (header("x-user-id"), header("x-auth-token")) {
        (Some(u), Some(t)) => (u, t),
        _ => match (cookie(&headers, "rc_uid"), cookie(&headers, "rc_token")) {
            (Some(u), Some(t)) => (u, t),
            _ => return RcError::Unauthorized.into_response(),
        },
    };
    let me = match state.service.authenticate(token).await {
        Ok(me) if me.id == uid => me,
        Ok(_) => return RcError::Unauthorized.into_response(),
        Err(e) if e.code.http_status() >= 500 => return face.error(e),
        Err(_) => return RcError::Unauthorized.into_response(),
    };
    crate::native::files::serve(&state, &me, &id, &headers, download_error).await
}

/// Rocket.Chat answers a refused or missing file with the HTTP status, not a Meteor error.
fn download_error(e: imsync_core::Error) -> Response {
    use axum::http::StatusCode;
    use imsync_core::ErrorCode;
    let status = match e.code {
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        _ => return RcError::from(e).into_response(),
    };
    RcError::Status(status, e.message).into_response()
}
