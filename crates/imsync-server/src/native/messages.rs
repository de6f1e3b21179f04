use super::{ok, ok_meta, render, Envelope, PagedEnvelope};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{int_param, JsonBody, QueryParams, UnusedBody};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use imsync_core::model::User;
use imsync_core::Error;
use imsync_service::{NewMessage, SendOutcome};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
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
    /// The service's message for this body: the one mapping from a client's send to a message,
    /// shared by the REST send routes and the WebSocket's `message.send` so that the same input
    /// makes the same message (or the same error) on either. `header_key` is the REST-only
    /// `X-Idempotency-Key`.
    pub fn into_new(self, header_key: Option<String>) -> Result<NewMessage, Error> {
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
            // while the SDK may mint a fresh header key per attempt: metadata wins, then the
            // body's key, then the header.
            idempotency_key: metadata_key.or(self.idempotency_key).or(header_key),
            id: None,
        })
    }
}

/// The `X-Idempotency-Key` header, if set to something. Its own extractor: taking the whole
/// `HeaderMap` would copy every header of every send.
pub struct IdempotencyHeader(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IdempotencyHeader(
            parts
                .headers
                .get("x-idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
        ))
    }
}

/// The message a WebSocket `message.send` payload asks for, read as a REST send body is (a
/// mistyped field is the same `INVALID_REQUEST`); the payload's other fields (`conversationId`)
/// are the frame's business.
pub fn socket_send(payload: Value) -> Result<NewMessage, Error> {
    serde_json::from_value::<SendBody>(payload)
        .map_err(|e| Error::invalid(format!("Invalid JSON body: {e}")))?
        .into_new(None)
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

/// `data` of a send: the conversation (a direct send may have just created it), the message,
/// and whether this was an idempotent retry of an earlier send.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct SendData {
    conversation_id: String,
    #[schema(value_type = render::MessageView)]
    message: Value,
    duplicate: bool,
}

/// The send response the SDK consumes: [`SendData`]; 201 for a new message and for its
/// idempotent retries alike.
fn send_response(outcome: &SendOutcome) -> Response {
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

/// `meta` of a history page.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryMeta {
    /// Messages in the conversation the caller can see.
    total: i64,
    page_size: i64,
    /// Null for a direct conversation that does not exist yet.
    #[schema(required = true)]
    conversation_id: Option<String>,
}

/// What a send or a history read addresses: a conversation by id (the conversation and group
/// routes), or the direct conversation with a user by id or username (the direct routes; a
/// send creates it on first use).
enum Target {
    Conversation(String),
    Direct(String),
}

async fn send_to(
    state: &AppState,
    me: &User,
    target: Target,
    IdempotencyHeader(key): IdempotencyHeader,
    body: SendBody,
) -> ApiResult<Response> {
    let new = body.into_new(key)?;
    let outcome = match target {
        Target::Conversation(id) => state.service.send(me, &id, new).await?,
        Target::Direct(user) => state.service.send_direct(me, &user, new).await?,
    };
    Ok(send_response(&outcome))
}

async fn history_of(
    state: &AppState,
    me: &User,
    target: Target,
    q: HistoryQuery,
) -> ApiResult<Response> {
    let limit = q.limit()?;
    let (before, after) = q.cursors();
    let page = match target {
        Target::Conversation(id) => {
            Some(state.service.history(me, &id, before, after, limit).await?)
        }
        Target::Direct(user) => {
            state
                .service
                .direct_history(me, &user, before, after, limit)
                .await?
        }
    };
    let (messages, meta) = match page {
        Some(page) => (
            page.messages
                .iter()
                .map(|m| render::message_with_reactions(m, page.reactions.get(&m.id)))
                .collect(),
            HistoryMeta {
                total: page.total,
                page_size: limit,
                conversation_id: Some(page.conversation_id),
            },
        ),
        None => (
            Vec::new(),
            HistoryMeta {
                total: 0,
                page_size: limit,
                conversation_id: None,
            },
        ),
    };
    Ok(ok_meta(messages, meta))
}

#[utoipa::path(post, path = "/api/im/messages/{conversationId}", operation_id = "sendMessage",
    params(("conversationId" = String, Path,), ("X-Idempotency-Key" = Option<String>, Header,)), request_body = SendBody,
    responses((status = 201, description = "Sent (or the original message of an idempotent retry)", body = Envelope<SendData>),
        (status = 403, description = "Not a participant"), (status = 409, description = "Idempotency key reused with another payload")))]
pub async fn send(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(conversation_id): Path<String>,
    key: IdempotencyHeader,
    JsonBody(b): JsonBody<SendBody>,
) -> ApiResult<Response> {
    let target = Target::Conversation(conversation_id);
    send_to(&state, &me, target, key, b).await
}

#[utoipa::path(get, path = "/api/im/messages/{conversationId}", operation_id = "messageHistory",
    params(("conversationId" = String, Path,), ("limit" = Option<i64>, Query,), ("before" = Option<String>, Query,), ("after" = Option<String>, Query,)),
    responses((status = 200, description = "Messages, oldest first", body = PagedEnvelope<Vec<render::MessageView>, HistoryMeta>)))]
pub async fn history(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(conversation_id): Path<String>,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> ApiResult<Response> {
    history_of(&state, &me, Target::Conversation(conversation_id), q).await
}

#[utoipa::path(post, path = "/api/im/direct/{userId}/messages", operation_id = "sendDirectMessage",
    params(("userId" = String, Path, description = "User id or username"), ("X-Idempotency-Key" = Option<String>, Header,)), request_body = SendBody,
    responses((status = 201, description = "Sent; the direct conversation is created on first use", body = Envelope<SendData>)))]
pub async fn direct_send(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(user_id): Path<String>,
    key: IdempotencyHeader,
    JsonBody(b): JsonBody<SendBody>,
) -> ApiResult<Response> {
    send_to(&state, &me, Target::Direct(user_id), key, b).await
}

#[utoipa::path(get, path = "/api/im/direct/{userId}/messages", operation_id = "directHistory",
    params(("userId" = String, Path, description = "User id or username"), ("limit" = Option<i64>, Query,), ("before" = Option<String>, Query,), ("after" = Option<String>, Query,)),
    responses((status = 200, description = "Messages, oldest first; empty before the first send", body = PagedEnvelope<Vec<render::MessageView>, HistoryMeta>)))]
pub async fn direct_history(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(user_id): Path<String>,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> ApiResult<Response> {
    history_of(&state, &me, Target::Direct(user_id), q).await
}

#[utoipa::path(post, path = "/api/im/groups/{id}/messages", operation_id = "sendGroupMessage",
    params(("id" = String, Path,), ("X-Idempotency-Key" = Option<String>, Header,)), request_body = SendBody,
    responses((status = 201, description = "Sent", body = Envelope<SendData>)))]
pub async fn group_send(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    key: IdempotencyHeader,
    JsonBody(b): JsonBody<SendBody>,
) -> ApiResult<Response> {
    send_to(&state, &me, Target::Conversation(id), key, b).await
}

#[utoipa::path(get, path = "/api/im/groups/{id}/messages", operation_id = "groupHistory",
    params(("id" = String, Path,), ("limit" = Option<i64>, Query,), ("before" = Option<String>, Query,), ("after" = Option<String>, Query,)),
    responses((status = 200, description = "Messages, oldest first", body = PagedEnvelope<Vec<render::MessageView>, HistoryMeta>)))]
pub async fn group_history(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> ApiResult<Response> {
    history_of(&state, &me, Target::Conversation(id), q).await
}

/// `data` of an edit.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageData {
    conversation_id: String,
    #[schema(value_type = render::MessageView)]
    message: Value,
}

/// `data` of a delete.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    id: String,
    conversation_id: String,
    deleted: bool,
}

/// `data` of a reaction: the message's reactions after it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reactions {
    message_id: String,
    /// User ids by emoji, in the order they reacted.
    #[schema(value_type = std::collections::HashMap<String, Vec<String>>)]
    reactions: Value,
}

#[derive(Serialize, ToSchema)]
pub struct Delivered {
    updated: u64,
}

#[utoipa::path(patch, path = "/api/im/messages/{conversationId}/{messageId}",
    params(("conversationId" = String, Path,), ("messageId" = String, Path,)), request_body = EditBody,
    responses((status = 200, description = "Edited", body = Envelope<MessageData>), (status = 403, description = "Not the sender")))]
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
    Ok(ok(MessageData {
        message: render::message(&m),
        conversation_id: m.conversation_id,
    }))
}

#[utoipa::path(delete, path = "/api/im/messages/{conversationId}/{messageId}",
    params(("conversationId" = String, Path,), ("messageId" = String, Path,)),
    responses((status = 200, description = "Deleted", body = Envelope<Deleted>), (status = 403, description = "Not the sender")))]
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
    Ok(ok(Deleted {
        id: m.id,
        conversation_id: m.conversation_id,
        deleted: true,
    }))
}

#[utoipa::path(post, path = "/api/im/messages/{conversationId}/{messageId}/reactions",
    params(("conversationId" = String, Path,), ("messageId" = String, Path,)), request_body = ReactBody,
    responses((status = 200, description = "The message's reactions", body = Envelope<Reactions>)))]
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
    Ok(ok(Reactions {
        message_id,
        reactions,
    }))
}

#[utoipa::path(post, path = "/api/im/messages/delivered", request_body = DeliveredBody,
    responses((status = 200, description = "How many receipts were new", body = Envelope<Delivered>)))]
pub async fn delivered(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<DeliveredBody>,
) -> ApiResult<Response> {
    let n = state
        .service
        .mark_delivered(&me, &b.conversation_id, b.message_ids)
        .await?;
    Ok(ok(Delivered { updated: n }))
}
