use super::{ok, ok_meta, render};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{int_param, JsonBody, QueryParams, UnusedBody};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use imsync_core::Error;
use imsync_service::{HistoryPage, NewMessage, SendOutcome};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// The send body of every send route (docs/native.md, "Sending messages").
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendBody {
    #[serde(default)]
    content: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    idempotency_key: Option<String>,
    metadata: Option<Value>,
    attachments: Option<Value>,
    parent_id: Option<String>,
    quoted_message_id: Option<String>,
    content_blocks: Option<Value>,
    /// Signature fields of signed messages: stored in metadata, not verified.
    sec_version: Option<Value>,
    sender_did: Option<Value>,
    content_hash: Option<Value>,
    signature: Option<Value>,
    signed_at: Option<Value>,
}

impl SendBody {
    /// The service's message, with the idempotency key from the header, the body or metadata.
    pub fn into_new(self, headers: &HeaderMap) -> Result<NewMessage, Error> {
        let mut metadata = match self.metadata {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(Error::invalid("metadata must be an object")),
        };
        for (k, v) in [
            ("attachments", self.attachments),
            ("contentBlocks", self.content_blocks),
            ("secVersion", self.sec_version),
            ("senderDid", self.sender_did),
            ("contentHash", self.content_hash),
            ("signature", self.signature),
            ("signedAt", self.signed_at),
        ] {
            if let Some(v) = v.filter(|v| !v.is_null()) {
                metadata.insert(k.into(), v);
            }
        }
        let header_key = headers
            .get("x-idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let metadata_key = metadata
            .get("_idempotencyKey")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let has_blocks = metadata.contains_key("contentBlocks");
        let content = match self.content {
            Some(c) => c,
            None if has_blocks => String::new(),
            None => return Err(Error::invalid("content is required")),
        };
        if content.trim().is_empty() && !has_blocks && metadata.get("attachments").is_none() {
            return Err(Error::invalid("content must not be empty"));
        }
        Ok(NewMessage {
            content,
            kind: self.kind,
            metadata: Some(Value::Object(metadata)),
            parent_id: self.parent_id,
            quoted_id: self.quoted_message_id,
            // The offline outbox's key lives in metadata and stays the same on every retry,
            // while the SDK may mint a fresh header key per attempt: metadata wins.
            idempotency_key: metadata_key.or(self.idempotency_key).or(header_key),
            id: None,
        })
    }
}

#[derive(Deserialize, ToSchema)]
pub struct EditBody {
    content: String,
    metadata: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
pub struct ReactBody {
    emoji: String,
    #[serde(default)]
    remove: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredBody {
    conversation_id: String,
    message_ids: Vec<String>,
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<String>,
    before: Option<String>,
    after: Option<String>,
    #[allow(dead_code)]
    offset: Option<String>,
}

impl HistoryQuery {
    /// `limit` defaults to 50 and is capped at 200; anything not a positive integer is a 400.
    pub fn limit(&self) -> Result<i64, crate::error::ApiError> {
        match int_param("limit", self.limit.as_deref())? {
            None => Ok(50),
            Some(n) if n >= 1 => Ok(n.min(200)),
            Some(_) => Err(Error::param("limit must be at least 1").into()),
        }
    }
    pub fn cursors(&self) -> (Option<String>, Option<String>) {
        let f = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        (f(&self.before), f(&self.after))
    }
}

/// The send response the SDK consumes: `{conversationId, message}`; 201 for a new message and
/// for its idempotent retries alike.
pub fn send_response(outcome: &SendOutcome) -> Response {
    // The hottest response of the API: the message goes out as the text its event stores, so
    // it is rendered once per send, not once more here.
    let conversation_id = serde_json::to_string(&outcome.message.conversation_id)
        .unwrap_or_else(|_| "null".to_owned());
    let body = format!(
        r#"{{"ok":true,"data":{{"conversationId":{conversation_id},"message":{},"duplicate":{}}}}}"#,
        outcome.rendered, !outcome.created
    );
    (
        axum::http::StatusCode::CREATED,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub fn history_response(page: &HistoryPage, limit: i64) -> Response {
    ok_meta(
        page.messages.iter().map(render::message).collect(),
        json!({ "total": page.total, "pageSize": limit, "conversationId": page.conversation_id }),
    )
}

#[utoipa::path(post, path = "/api/im/messages/{conversationId}", params(("conversationId" = String, Path,),
    ("X-Idempotency-Key" = Option<String>, Header,)), request_body = SendBody,
    responses((status = 201, description = "Sent (or the original message of an idempotent retry)"),
        (status = 403, description = "Not a participant"), (status = 409, description = "Idempotency key reused with another payload")))]
pub async fn send(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(conversation_id): Path<String>,
    headers: HeaderMap,
    JsonBody(b): JsonBody<SendBody>,
) -> ApiResult<Response> {
    let new = b.into_new(&headers)?;
    let outcome = state.service.send(&me, &conversation_id, new).await?;
    Ok(send_response(&outcome))
}

#[utoipa::path(get, path = "/api/im/messages/{conversationId}", params(("conversationId" = String, Path,),
    ("limit" = Option<i64>, Query,), ("before" = Option<String>, Query,), ("after" = Option<String>, Query,)),
    responses((status = 200, description = "Messages, oldest first")))]
pub async fn history(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(conversation_id): Path<String>,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> ApiResult<Response> {
    let limit = q.limit()?;
    let (before, after) = q.cursors();
    let page = state
        .service
        .history(&me, &conversation_id, before, after, limit)
        .await?;
    Ok(history_response(&page, limit))
}

#[utoipa::path(patch, path = "/api/im/messages/{conversationId}/{messageId}",
    params(("conversationId" = String, Path,), ("messageId" = String, Path,)), request_body = EditBody,
    responses((status = 200, description = "Edited"), (status = 403, description = "Not the sender")))]
pub async fn edit(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path((conversation_id, message_id)): Path<(String, String)>,
    JsonBody(b): JsonBody<EditBody>,
) -> ApiResult<Response> {
    let m = state
        .service
        .edit(&me, &conversation_id, &message_id, b.content, b.metadata)
        .await?;
    Ok(ok(
        json!({ "conversationId": m.conversation_id, "message": render::message(&m) }),
    ))
}

#[utoipa::path(delete, path = "/api/im/messages/{conversationId}/{messageId}",
    params(("conversationId" = String, Path,), ("messageId" = String, Path,)),
    responses((status = 200, description = "Deleted"), (status = 403, description = "Not the sender")))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path((conversation_id, message_id)): Path<(String, String)>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    let m = state
        .service
        .delete_message(&me, &conversation_id, &message_id)
        .await?;
    Ok(ok(
        json!({ "id": m.id, "conversationId": m.conversation_id, "deleted": true }),
    ))
}

#[utoipa::path(post, path = "/api/im/messages/{conversationId}/{messageId}/reactions",
    params(("conversationId" = String, Path,), ("messageId" = String, Path,)), request_body = ReactBody,
    responses((status = 200, description = "The message's reactions")))]
pub async fn react(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path((conversation_id, message_id)): Path<(String, String)>,
    JsonBody(b): JsonBody<ReactBody>,
) -> ApiResult<Response> {
    let reactions = state
        .service
        .react(&me, &conversation_id, &message_id, b.emoji, !b.remove)
        .await?;
    Ok(ok(
        json!({ "messageId": message_id, "reactions": reactions }),
    ))
}

#[utoipa::path(post, path = "/api/im/messages/delivered", request_body = DeliveredBody,
    responses((status = 200, description = "How many receipts were new")))]
pub async fn delivered(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<DeliveredBody>,
) -> ApiResult<Response> {
    let n = state
        .service
        .mark_delivered(&me, &b.conversation_id, b.message_ids)
        .await?;
    Ok(ok(json!({ "updated": n })))
}
