use super::error::{bad, ok_status, TsddAuth, TsddError, TsddJson, TsddResult};
use super::render::{self, CONTENT_EDIT_KEY};
use super::{channel, message_id};
use crate::app::AppState;
use crate::extract::UnusedBody;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::Json;
use imsync_service::{ChannelRange, MessageRef, NewMessage};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

#[derive(Deserialize)]
pub struct SendBody {
    channel_id: String,
    channel_type: i64,
    payload: Value,
    #[serde(default)]
    client_msg_no: String,
}

/// `POST /v1/message/send`: the payload is stored whole and given back as posted;
/// `client_msg_no` is the idempotency key.
pub async fn send(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<SendBody>,
) -> TsddResult<Response> {
    let ch = channel(&b.channel_id, b.channel_type)?;
    let Value::Object(payload) = b.payload else {
        return Err(bad("payload must be a JSON object"));
    };
    let content_type = payload
        .get("type")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("payload.type must be an integer"))?;
    let content = match payload.get("content") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => return Err(bad("payload.content must be a string")),
    };
    if content_type == 1 && content.trim().is_empty() {
        return Err(bad("payload.content must not be empty"));
    }
    let new = NewMessage {
        content,
        kind: Some(render::native_kind(content_type).to_owned()),
        metadata: Some(render::posted_metadata(payload)),
        idempotency_key: Some(b.client_msg_no.trim().to_owned()).filter(|k| !k.is_empty()),
        ..Default::default()
    };
    let out = state.service.send_to_channel(&me, ch, new).await?;
    let m = &out.message;
    Ok(Json(json!({
        "message_id": m.event_seq,
        "message_idstr": m.event_seq.to_string(),
        "message_seq": m.msg_seq,
        "client_msg_no": render::client_msg_no(m),
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct ChannelSyncBody {
    channel_id: String,
    channel_type: i64,
    #[serde(default)]
    start_message_seq: i64,
    #[serde(default)]
    end_message_seq: i64,
    #[serde(default)]
    limit: i64,
    #[serde(default)]
    pull_mode: i64,
}

/// `POST /v1/message/channel/sync`.
pub async fn channel_sync(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<ChannelSyncBody>,
) -> TsddResult<Response> {
    let ch = channel(&b.channel_id, b.channel_type)?;
    if b.start_message_seq < 0 || b.end_message_seq < 0 {
        return Err(bad("message seqs must not be negative"));
    }
    if !(0..=1).contains(&b.pull_mode) {
        return Err(bad("pull_mode must be 0 or 1"));
    }
    let range = ChannelRange {
        start: b.start_message_seq,
        end: b.end_message_seq,
        limit: b.limit,
        pull_up: b.pull_mode == 1,
    };
    let (page, names) = state
        .service
        .channel_messages(&me, ch.clone(), range)
        .await?;
    if page.not_member {
        return Ok(Json(json!({
            "start_message_seq": b.end_message_seq,
            "end_message_seq": b.end_message_seq,
            "pull_mode": b.pull_mode,
            "more": 0,
            "messages": [],
        }))
        .into_response());
    }
    let messages: Vec<Value> = page
        .messages
        .iter()
        .map(|m| render::message(m, &ch.id, ch.kind, &names))
        .collect();
    Ok(Json(json!({
        "start_message_seq": b.start_message_seq,
        "end_message_seq": b.end_message_seq,
        "pull_mode": b.pull_mode,
        "more": i64::from(page.more),
        "messages": messages,
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct ExtraSyncBody {
    channel_id: String,
    channel_type: i64,
    #[serde(default)]
    extra_version: i64,
    #[serde(default)]
    #[allow(dead_code)]
    source: String,
    #[serde(default)]
    limit: i64,
}

/// `POST /v1/message/extra/sync`.
pub async fn extra_sync(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<ExtraSyncBody>,
) -> TsddResult<Response> {
    let ch = channel(&b.channel_id, b.channel_type)?;
    let list = state
        .service
        .message_extras(&me, ch, b.extra_version, b.limit)
        .await?;
    let out: Vec<Value> = list.iter().map(render::extra_entry).collect();
    Ok(Json(out).into_response())
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// `POST /v1/message/revoke?message_id=&client_msg_no=&channel_id=&channel_type=`.
pub async fn revoke(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    uri: Uri,
    _body: UnusedBody<TsddError>,
) -> TsddResult<Response> {
    let q = query_map(&uri);
    let get = |k: &str| q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let client_msg_no = get("client_msg_no").ok_or_else(|| bad("client_msg_no不能为空！"))?;
    let channel_type = get("channel_type")
        .ok_or_else(|| bad("channel_type不能为空！"))?
        .parse::<i64>()
        .map_err(|_| bad("channel_type must be an integer"))?;
    let ch = channel(get("channel_id").unwrap_or_default(), channel_type)?;
    let message_id = get("message_id")
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| bad("message_id must be an integer"))
        })
        .transpose()?;
    state
        .service
        .revoke(&me, ch, client_msg_no.to_owned(), message_id)
        .await?;
    Ok(ok_status())
}

#[derive(Deserialize)]
pub struct MessageRefBody {
    #[serde(deserialize_with = "message_id")]
    message_id: i64,
    channel_id: String,
    channel_type: i64,
    message_seq: i64,
}

impl MessageRefBody {
    fn into_ref(self) -> TsddResult<MessageRef> {
        if self.message_id <= 0 || self.message_seq <= 0 {
            return Err(bad("message_id and message_seq must be positive"));
        }
        Ok(MessageRef {
            channel: channel(&self.channel_id, self.channel_type)?,
            message_id: self.message_id,
            message_seq: self.message_seq,
        })
    }
}

/// `DELETE /v1/message` with `[{message_id, channel_id, channel_type, message_seq}]`: for the
/// caller only.
pub async fn delete_for_me(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(list): TsddJson<Vec<MessageRefBody>>,
) -> TsddResult<Response> {
    let refs = list
        .into_iter()
        .map(MessageRefBody::into_ref)
        .collect::<TsddResult<Vec<_>>>()?;
    state.service.hide_messages(&me, refs).await?;
    Ok(ok_status())
}

/// `DELETE /v1/message/mutual`: for everyone.
pub async fn delete_mutual(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<MessageRefBody>,
) -> TsddResult<Response> {
    state.service.delete_mutual(&me, b.into_ref()?).await?;
    Ok(ok_status())
}

#[derive(Deserialize)]
pub struct EditBody {
    #[serde(deserialize_with = "message_id")]
    message_id: i64,
    #[serde(default)]
    message_seq: i64,
    channel_id: String,
    channel_type: i64,
    content_edit: String,
}

/// `POST /v1/message/edit`: `content_edit` is the JSON string of the new payload. Only the
/// sender may edit.
pub async fn edit(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<EditBody>,
) -> TsddResult<Response> {
    let target = MessageRef {
        channel: channel(&b.channel_id, b.channel_type)?,
        message_id: b.message_id,
        message_seq: b.message_seq,
    };
    let edited: Value = serde_json::from_str(&b.content_edit)
        .map_err(|_| bad("content_edit must be the JSON string of a payload"))?;
    let Value::Object(edited) = edited else {
        return Err(bad(
            "content_edit must be the JSON string of a payload object",
        ));
    };
    let content = match edited.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let mut patch = Map::new();
    patch.insert(CONTENT_EDIT_KEY.into(), Value::Object(edited));
    state
        .service
        .edit_in_channel(&me, target, content, patch)
        .await?;
    Ok(ok_status())
}

#[derive(Deserialize)]
pub struct OffsetBody {
    channel_id: String,
    channel_type: i64,
    message_seq: i64,
}

/// `POST /v1/message/offset`: clears the caller's history up to `message_seq`.
pub async fn offset(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<OffsetBody>,
) -> TsddResult<Response> {
    let ch = channel(&b.channel_id, b.channel_type)?;
    state.service.clear_history(&me, ch, b.message_seq).await?;
    Ok(ok_status())
}

#[derive(Deserialize)]
pub struct ReadedBody {
    channel_id: String,
    channel_type: i64,
    message_ids: Vec<String>,
}

/// `POST /v1/message/readed`: moves the read pointer to the newest of the messages.
pub async fn readed(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<ReadedBody>,
) -> TsddResult<Response> {
    let ch = channel(&b.channel_id, b.channel_type)?;
    if b.message_ids.is_empty() {
        return Err(bad("message_ids不能为空！"));
    }
    state
        .service
        .mark_read_messages(&me, ch, b.message_ids)
        .await?;
    Ok(ok_status())
}

/// `POST /v1/message/sync`: CMD messages are never generated, so there are none to fetch.
pub async fn cmd_sync(TsddAuth(_me): TsddAuth, _body: UnusedBody<TsddError>) -> Response {
    Json(json!([])).into_response()
}

/// `POST /v1/message/syncack/:last_message_seq`.
pub async fn cmd_syncack(
    TsddAuth(_me): TsddAuth,
    Path(_seq): Path<String>,
    _body: UnusedBody<TsddError>,
) -> Response {
    ok_status()
}
