use super::error::{bad, ok_status, TsddAuth, TsddError, TsddJson, TsddResult};
use super::{channel, render};
use crate::app::AppState;
use crate::extract::UnusedBody;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use imsync_service::{Channel, ConversationSyncRequest, ExtraPatch};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Deserialize)]
pub struct SyncBody {
    #[serde(default)]
    version: i64,
    #[serde(default)]
    last_msg_seqs: String,
    #[serde(default)]
    msg_count: i64,
    #[serde(default)]
    #[allow(dead_code)]
    device_uuid: String,
}

/// `channelID:channelType:lastSeq|…`; entries that do not split into three parts, or whose type
/// or seq is not a number, are ignored.
fn parse_last_msg_seqs(s: &str) -> HashMap<Channel, i64> {
    let mut out = HashMap::new();
    for entry in s.split('|') {
        let parts: Vec<&str> = entry.split(':').collect();
        let [id, t, seq] = parts[..] else { continue };
        let (Ok(t), Ok(seq)) = (t.trim().parse::<i64>(), seq.trim().parse::<i64>()) else {
            continue;
        };
        if let Ok(ch) = channel(id, t) {
            out.insert(ch, seq);
        }
    }
    out
}

/// `POST /v1/conversation/sync`.
pub async fn sync(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<SyncBody>,
) -> TsddResult<Response> {
    if b.version < 0 {
        return Err(bad("version must not be negative"));
    }
    let req = ConversationSyncRequest {
        version: b.version,
        last_msg_seqs: parse_last_msg_seqs(&b.last_msg_seqs),
        msg_count: b.msg_count,
    };
    let out = state.service.conversation_sync(&me, req).await?;
    let conversations: Vec<Value> = out
        .conversations
        .iter()
        .map(|s| render::conversation(s, &out.names))
        .collect();
    let users: Vec<Value> = out
        .users
        .iter()
        .map(|(u, p)| render::user(u, p.muted, p.pinned))
        .collect();
    let groups: Vec<Value> = out.groups.iter().map(render::group).collect();
    Ok(Json(json!({
        "uid": me.id,
        "conversations": conversations,
        "users": users,
        "groups": groups,
    }))
    .into_response())
}

/// `POST /v1/conversation/syncack`: nothing to record, versions are exact.
pub async fn syncack(TsddAuth(_me): TsddAuth, _body: UnusedBody<TsddError>) -> Response {
    ok_status()
}

#[derive(Deserialize)]
pub struct ExtraSyncBody {
    #[serde(default)]
    version: i64,
}

/// `POST /v1/conversation/extra/sync`.
pub async fn extra_sync(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<ExtraSyncBody>,
) -> TsddResult<Response> {
    let list = state
        .service
        .conversation_extras_since(&me, b.version)
        .await?;
    let out: Vec<Value> = list
        .iter()
        .map(|(ch, e)| render::conversation_extra(&ch.id, ch.kind, e))
        .collect();
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
pub struct ExtraBody {
    #[serde(default)]
    browse_to: i64,
    #[serde(default)]
    keep_message_seq: i64,
    #[serde(default)]
    keep_offset_y: i64,
    #[serde(default)]
    draft: String,
}

fn path_channel(id: &str, channel_type: &str) -> TsddResult<Channel> {
    let t = channel_type
        .parse::<i64>()
        .map_err(|_| bad("channel_type must be an integer"))?;
    channel(id, t)
}

/// `POST /v1/conversations/:id/:type/extra`: answers `{"version":N}`.
pub async fn set_extra(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    Path((id, channel_type)): Path<(String, String)>,
    TsddJson(b): TsddJson<ExtraBody>,
) -> TsddResult<Response> {
    let ch = path_channel(&id, &channel_type)?;
    let patch = ExtraPatch {
        browse_to: b.browse_to,
        keep_message_seq: b.keep_message_seq,
        keep_offset_y: b.keep_offset_y,
        draft: b.draft,
    };
    let version = state.service.set_conversation_extra(&me, ch, patch).await?;
    Ok(Json(json!({ "version": version })).into_response())
}

/// `DELETE /v1/conversations/:id/:type`: hidden from the list until its next message.
pub async fn delete(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    Path((id, channel_type)): Path<(String, String)>,
    _body: UnusedBody<TsddError>,
) -> TsddResult<Response> {
    let ch = path_channel(&id, &channel_type)?;
    state.service.delete_from_list(&me, ch).await?;
    Ok(ok_status())
}

#[derive(Deserialize)]
pub struct ClearUnreadBody {
    channel_id: String,
    channel_type: i64,
    #[serde(default)]
    unread: i64,
    #[serde(default)]
    #[allow(dead_code)]
    message_seq: i64,
}

/// `PUT /v1/coversation/clearUnread` (sic).
pub async fn clear_unread(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<ClearUnreadBody>,
) -> TsddResult<Response> {
    let ch = channel(&b.channel_id, b.channel_type)?;
    if b.unread < 0 {
        return Err(bad("unread must not be negative"));
    }
    state.service.set_unread(&me, ch, b.unread).await?;
    Ok(ok_status())
}
