//! TangSengDaoDao's wire shapes for messages (MsgSyncResp), message extras, reactions,
//! conversations, users and groups. Messages carry the integer id (the seq of the event that
//! created them) and its string; a person channel is named by the peer's uid; payloads are JSON
//! objects: the payload as posted through this face, else `{"type":<code>,"content":…}` with the
//! message's metadata keys merged in.

use imsync_core::model::{ConversationKind, Message, ParticipantRole, Reaction, User};
use imsync_core::time::rfc3339;
use imsync_service::{
    Channel, ChannelMessage, ConversationExtra, ExtraView, GroupInfo, Names, ReactionRow,
    SyncedConversation, REVOKED_BY_KEY,
};
use serde_json::{json, Map, Value};

/// Where a payload posted through this face is kept, whole, in the message's metadata.
pub const PAYLOAD_KEY: &str = "_tsddPayload";
/// Where `/v1/message/edit`'s `content_edit` is kept.
pub const CONTENT_EDIT_KEY: &str = "_tsddContentEdit";

/// TangSengDaoDao's content type for a native message type.
pub fn content_type(kind: &str) -> i64 {
    match kind {
        "image" => 2,
        "voice" => 4,
        "location" => 6,
        "file" => 8,
        _ => 1,
    }
}

/// The native message type for a TangSengDaoDao content type.
pub fn native_kind(content_type: i64) -> &'static str {
    match content_type {
        2 => "image",
        4 => "voice",
        6 => "location",
        8 => "file",
        _ => "text",
    }
}

pub fn channel_type(kind: ConversationKind) -> i64 {
    match kind {
        ConversationKind::Direct => 1,
        ConversationKind::Group => 2,
    }
}

/// `2024-05-01 10:00:00` (UTC), as TangSengDaoDao writes times.
pub fn datetime(ms: i64) -> String {
    rfc3339(ms).get(..19).unwrap_or_default().replace('T', " ")
}

pub fn client_msg_no(m: &Message) -> String {
    m.metadata
        .get("_idempotencyKey")
        .and_then(Value::as_str)
        .map_or_else(|| m.id.clone(), str::to_owned)
}

/// Leaves out zero numbers, empty strings, empty lists and nulls, as Go's `omitempty` does.
fn omit_empty(v: &mut Value, keys: &[&str]) {
    if let Some(o) = v.as_object_mut() {
        for k in keys {
            let empty = match o.get(*k) {
                Some(Value::Null) | None => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Bool(b)) => !b,
                Some(Value::Object(_)) => false,
            };
            if empty {
                o.remove(*k);
            }
        }
    }
}

/// Where this face's clients fetch a file: relative to their API base (`…/v1/`).
pub fn preview_path(id: &str) -> String {
    format!("file/preview/{id}")
}

/// The metadata linking a message posted through this face to the upload its payload's `url`
/// names, so that every face sees a file message and its download is authorised by it.
pub fn file_metadata(payload: &Map<String, Value>) -> Map<String, Value> {
    let mut md = Map::new();
    let Some(id) = payload
        .get("url")
        .and_then(Value::as_str)
        .and_then(imsync_service::files::upload_id_in_url)
    else {
        return md;
    };
    md.insert("uploadId".into(), json!(id));
    md.insert(
        "fileUrl".into(),
        json!(imsync_service::files::content_url(id)),
    );
    if let Some(name) = payload.get("name").filter(|v| v.is_string()) {
        md.insert("fileName".into(), name.clone());
    }
    if let Some(size) = payload.get("size").filter(|v| v.is_number()) {
        md.insert("fileSize".into(), size.clone());
    }
    md
}

/// A posted payload as a message's metadata: kept whole, with the link to its file if any.
pub fn posted_metadata(payload: Map<String, Value>) -> Value {
    let mut md = file_metadata(&payload);
    md.insert(PAYLOAD_KEY.into(), Value::Object(payload));
    Value::Object(md)
}

pub fn payload(m: &Message) -> Value {
    let code = content_type(&m.kind);
    if m.is_deleted() || m.revoked {
        // A deleted message keeps its place in the seq order, not its content.
        return json!({ "type": code });
    }
    if let Some(Value::Object(posted)) = m.metadata.get(PAYLOAD_KEY) {
        return Value::Object(posted.clone());
    }
    let mut p = Map::new();
    p.insert("type".into(), json!(code));
    p.insert("content".into(), json!(m.content));
    if let Some(id) = m.metadata.get("uploadId").and_then(Value::as_str) {
        // The fields of TangSengDaoDao's file and image contents, with a URL under its base.
        p.insert("url".into(), json!(preview_path(id)));
        if let Some(name) = m.metadata.get("fileName") {
            p.insert("name".into(), name.clone());
        }
        if let Some(size) = m.metadata.get("fileSize") {
            p.insert("size".into(), size.clone());
        }
    }
    if let Some(meta) = m.metadata.as_object() {
        for (k, v) in meta {
            if !k.starts_with('_') && !p.contains_key(k) {
                p.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(p)
}

fn content_edit(m: &Message) -> Option<Value> {
    if m.edited_at.is_none() || m.is_deleted() {
        return None;
    }
    match m.metadata.get(CONTENT_EDIT_KEY) {
        // Kept unless a later edit through another face replaced the content.
        Some(Value::Object(ce))
            if ce
                .get("content")
                .and_then(Value::as_str)
                .is_none_or(|c| c == m.content) =>
        {
            Some(Value::Object(ce.clone()))
        }
        _ => Some(json!({ "type": content_type(&m.kind), "content": m.content })),
    }
}

fn has_extra(m: &Message, hidden: bool) -> bool {
    hidden || m.edited_at.is_some() || m.is_deleted() || m.revoked
}

/// A message's extras; `version` is the sync key (0 inside messages, as TangSengDaoDao sends,
/// so that clients take their extra-sync cursor only from `/v1/message/extra/sync`).
pub fn message_extra(m: &Message, hidden: bool, version: i64) -> Value {
    let revoker = m
        .metadata
        .get(REVOKED_BY_KEY)
        .and_then(Value::as_str)
        .filter(|_| m.revoked);
    let mut v = json!({
        "message_id": m.event_seq,
        "message_id_str": m.event_seq.to_string(),
        "revoke": i64::from(m.revoked),
        "revoker": revoker,
        "is_mutual_deleted": i64::from(m.is_deleted() && !m.revoked),
        "is_deleted": i64::from(hidden),
        "content_edit": content_edit(m),
        "edited_at": m.edited_at.filter(|_| !m.is_deleted()).map_or(0, |t| t / 1000),
        "extra_version": version,
        "readed": 0,
        "readed_count": 0,
        "is_pinned": 0,
    });
    omit_empty(&mut v, &["revoker", "content_edit", "edited_at"]);
    v
}

fn reaction(r: &Reaction, names: &Names) -> Value {
    json!({
        "seq": r.seq,
        "uid": r.user_id,
        "name": names.get(&r.user_id).cloned().unwrap_or_default(),
        "emoji": r.emoji,
        "is_deleted": i64::from(r.removed),
        "created_at": datetime(r.created_at),
    })
}

/// One message as MsgSyncResp, in a channel named `channel_id` by the reader.
pub fn message(
    v: &ChannelMessage,
    channel_id: &str,
    kind: ConversationKind,
    names: &Names,
) -> Value {
    let m = &v.message;
    let mut out = json!({
        "header": { "no_persist": 0, "red_dot": 1, "sync_once": 0 },
        "setting": 0,
        "message_id": m.event_seq,
        "message_idstr": m.event_seq.to_string(),
        "message_seq": m.msg_seq,
        "client_msg_no": client_msg_no(m),
        "from_uid": m.sender_id,
        "channel_id": channel_id,
        "channel_type": channel_type(kind),
        "timestamp": m.created_at / 1000,
        "payload": payload(m),
        "is_deleted": i64::from(v.hidden || m.is_deleted()),
        "revoke": i64::from(m.revoked),
        "extra_version": 0,
        "reactions": v.reactions.iter().map(|r| reaction(r, names)).collect::<Vec<_>>(),
    });
    if has_extra(m, v.hidden) {
        let mut extra = message_extra(m, v.hidden, 0);
        omit_empty(&mut extra, &["extra_version"]);
        if let Some(r) = extra.get("revoker").cloned() {
            out["revoker"] = r;
        }
        out["message_extra"] = extra;
    }
    omit_empty(&mut out, &["reactions", "revoke", "extra_version"]);
    out
}

pub fn extra_entry(e: &ExtraView) -> Value {
    message_extra(&e.message, e.hidden, e.version)
}

/// A reaction row of `/v1/reaction/sync`.
pub fn reaction_row(row: &ReactionRow, channel: &Channel, names: &Names) -> Value {
    let r = &row.reaction;
    json!({
        "message_id": row.message_event_seq.to_string(),
        "channel_id": channel.id,
        "channel_type": channel_type(channel.kind),
        "seq": r.seq,
        "uid": r.user_id,
        "name": names.get(&r.user_id).cloned().unwrap_or_default(),
        "emoji": r.emoji,
        "is_deleted": i64::from(r.removed),
        "created_at": datetime(r.created_at),
    })
}

pub fn conversation_extra(
    channel_id: &str,
    kind: ConversationKind,
    e: &ConversationExtra,
) -> Value {
    json!({
        "channel_id": channel_id,
        "channel_type": channel_type(kind),
        "browse_to": e.browse_to,
        "keep_message_seq": e.keep_message_seq,
        "keep_offset_y": e.keep_offset_y,
        "draft": e.draft,
        "version": e.version,
    })
}

pub fn conversation(s: &SyncedConversation, names: &Names) -> Value {
    let conv = &s.conversation;
    let kind = conv.kind;
    let mut v = json!({
        "channel_id": s.channel_id,
        "channel_type": channel_type(kind),
        "unread": s.unread,
        "mute": i64::from(s.me.muted),
        "stick": i64::from(s.me.pinned),
        "timestamp": conv.last_message_at.unwrap_or(conv.created_at) / 1000,
        "last_msg_seq": conv.last_msg_seq,
        "last_client_msg_no": s.last_message.as_ref().map(client_msg_no).unwrap_or_default(),
        "offset_msg_seq": s.me.cleared_seq,
        "version": s.version,
        "recents": s.recents.iter().map(|m| message(m, &s.channel_id, kind, names)).collect::<Vec<_>>(),
        "extra": s.extra.as_ref().map(|e| conversation_extra(&s.channel_id, kind, e)),
    });
    omit_empty(
        &mut v,
        &["unread", "mute", "stick", "version", "recents", "extra"],
    );
    v
}

/// A user as UserDetailResp, with the caller's settings of their person channel.
pub fn user(u: &User, mute: bool, top: bool) -> Value {
    json!({
        "uid": u.id,
        "name": u.display_name,
        "username": u.username,
        "avatar": u.avatar_url,
        "mute": i64::from(mute),
        "top": i64::from(top),
        "sex": 0,
        "category": if u.role == imsync_core::model::UserRole::Agent { "robot" } else { "" },
        "short_no": u.username,
        "online": 0,
        "robot": i64::from(u.role == imsync_core::model::UserRole::Agent),
        "status": 1,
        "follow": 0,
        "be_deleted": 0,
        "be_blacklist": 0,
        "remark": "",
        "created_at": datetime(u.created_at),
        "updated_at": datetime(u.updated_at),
    })
}

pub fn group(g: &GroupInfo) -> Value {
    let c = &g.conversation;
    let role = match g.me.role {
        ParticipantRole::Owner => 1,
        ParticipantRole::Admin => 2,
        ParticipantRole::Member => 0,
    };
    json!({
        "group_no": c.id,
        "group_type": 0,
        "name": c.title.clone().unwrap_or_default(),
        "notice": c.description.clone().unwrap_or_default(),
        "mute": i64::from(g.me.muted),
        "top": i64::from(g.me.pinned),
        "show_nick": 1,
        "save": 0,
        "forbidden": 0,
        "invite": 0,
        "status": 1,
        "member_count": g.member_count,
        "quit": i64::from(!g.me.is_present()),
        "role": role,
        "version": c.last_event_seq,
        "created_at": datetime(c.created_at),
        "updated_at": datetime(c.updated_at),
    })
}
