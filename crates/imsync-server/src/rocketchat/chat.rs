//! `chat.*` except the sync endpoints: post, send (client ids kept, `text` read as `msg`),
//! update, delete, react, getMessage, getThreadMessages.

use super::auth::RcAuth;
use super::error::{RcError, RcResult};
use super::params::{check, nullable, opt, query_object, req, str_of, RcBody, Ty};
use super::{render, success};
use crate::app::AppState;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use imsync_core::model::{Message, User};
use imsync_core::{Error, ErrorCode};
use imsync_service::{MessageView, NewMessage};
use serde_json::{json, Map, Value};

const POST_BY_ROOM: &[super::params::Prop] = &[
    req("roomId", Ty::StrOrStrs),
    opt("text", Ty::Str),
    opt("alias", Ty::Str),
    opt("emoji", Ty::Str),
    opt("avatar", Ty::Str),
    opt("attachments", Ty::Arr),
    opt("tmid", Ty::Str),
    opt("customFields", Ty::Obj),
    opt("parseUrls", Ty::Bool),
];

const POST_BY_CHANNEL: &[super::params::Prop] = &[
    req("channel", Ty::Str),
    opt("text", Ty::Str),
    opt("alias", Ty::Str),
    opt("emoji", Ty::Str),
    opt("avatar", Ty::Str),
    opt("attachments", Ty::Arr),
    opt("customFields", Ty::Obj),
    opt("parseUrls", Ty::Bool),
];

/// A view of a message the caller just wrote: no reactions or replies yet.
pub(super) fn fresh(message: Message, me: &User) -> MessageView {
    MessageView {
        message,
        sender: Some(me.clone()),
        edited_by: None,
        reactions: Vec::new(),
        replies: Vec::new(),
    }
}

/// The message fields Rocket.Chat keeps besides `msg`, as message metadata.
fn extra_fields(src: &Map<String, Value>) -> Value {
    let mut md = Map::new();
    for k in render::MESSAGE_FIELDS {
        if let Some(v) = src.get(*k).filter(|v| !v.is_null()) {
            md.insert((*k).into(), v.clone());
        }
    }
    Value::Object(md)
}

/// A send's errors as Rocket.Chat words them.
pub(super) fn send_error(e: Error) -> RcError {
    match e.code {
        ErrorCode::NotFound => RcError::meteor("error-invalid-room", "Invalid room"),
        ErrorCode::NotParticipant | ErrorCode::Forbidden => RcError::not_allowed(),
        ErrorCode::Conflict => RcError::meteor(
            "error-message-already-exists",
            "A message with this _id already exists",
        ),
        ErrorCode::InvalidRequest if e.message.contains("parentId") => {
            RcError::meteor("error-invalid-message", "Invalid thread message")
        }
        _ => e.into(),
    }
}

/// Finds the room a `chat.postMessage` names: `#name`, `@username`, an id, or a name.
async fn post_target(state: &AppState, me: &User, channel: &str) -> RcResult<String> {
    let invalid = || RcError::meteor("invalid-channel", "Invalid channel");
    if let Some(username) = channel.strip_prefix('@') {
        let (conv, _) = state
            .service
            .open_direct(me, username, None)
            .await
            .map_err(|e| match e.code {
                ErrorCode::NotFound | ErrorCode::InvalidRequest => invalid(),
                _ => e.into(),
            })?;
        return Ok(conv.conversation.id);
    }
    let name = channel.strip_prefix('#').unwrap_or(channel);
    match state.service.find_room(name).await {
        Ok(conv) => Ok(conv.id),
        Err(e) if e.code == ErrorCode::NotFound => Err(invalid()),
        Err(e) => Err(e.into()),
    }
}

/// `POST /api/v1/chat.postMessage`: `{roomId | channel, text?, …}`.
pub async fn post_message(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let schema = match (body.contains_key("roomId"), body.contains_key("channel")) {
        (true, false) => POST_BY_ROOM,
        (false, true) => POST_BY_CHANNEL,
        _ => {
            return Err(RcError::typed_body(
                "must match exactly one schema in oneOf",
            ))
        }
    };
    let b = check(&body, schema, false).map_err(RcError::typed_body)?;
    let (targets, channel_echo): (Vec<String>, Value) = match b.get("roomId") {
        Some(Value::Array(ids)) => (
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Value::Array(ids.clone()),
        ),
        Some(Value::String(id)) => (vec![id.clone()], json!(id)),
        _ => {
            let channel = str_of(&b, "channel").unwrap_or_default().to_owned();
            let id = post_target(&state, &me, &channel).await?;
            (vec![id], json!(channel))
        }
    };
    if targets.is_empty() {
        return Err(RcError::meteor("invalid-channel", "Invalid channel"));
    }
    let mut last = None;
    for rid in targets {
        let new = NewMessage {
            content: str_of(&b, "text").unwrap_or_default().to_owned(),
            metadata: Some(extra_fields(&b)),
            parent_id: str_of(&b, "tmid").map(str::to_owned),
            ..Default::default()
        };
        let out = state
            .service
            .send(&me, &rid, new)
            .await
            .map_err(send_error)?;
        last = Some(out.message);
    }
    let m = last.expect("at least one target");
    Ok(success(json!({
        "ts": m.created_at,
        "channel": channel_echo,
        "message": render::message(&fresh(m, &me)),
    })))
}

/// `POST /api/v1/chat.sendMessage`: `{message:{rid, _id?, msg? | text?, tmid?, …}}`.
pub async fn send_message(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let b = check(
        &body,
        &[req("message", Ty::Obj), opt("previewUrls", Ty::Arr)],
        false,
    )
    .map_err(RcError::typed_body)?;
    let msg = b["message"].as_object().cloned().unwrap_or_default();
    let Some(rid) = msg
        .get("rid")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(RcError::plain(
            "The 'rid' property on the message object is missing.",
        ));
    };
    for k in ["_id", "msg", "text", "tmid"] {
        if msg.get(k).is_some_and(|v| !v.is_string() && !v.is_null()) {
            return Err(RcError::typed_body(format!("/message/{k} must be string")));
        }
    }
    let content = msg
        .get("msg")
        .and_then(Value::as_str)
        .or_else(|| msg.get("text").and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned();
    let new = NewMessage {
        content,
        metadata: Some(extra_fields(&msg)),
        parent_id: msg
            .get("tmid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        id: msg
            .get("_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        ..Default::default()
    };
    let out = state
        .service
        .send(&me, rid, new)
        .await
        .map_err(send_error)?;
    Ok(success(
        json!({ "message": render::message(&fresh(out.message, &me)) }),
    ))
}

/// The message `msgId` if it is in `roomId`, with `chat.update`/`chat.delete`'s errors.
async fn message_in_room(
    state: &AppState,
    me: &User,
    room_id: &str,
    msg_id: &str,
) -> RcResult<Message> {
    let not_found = || RcError::plain(format!("No message found with the id of \"{msg_id}\"."));
    let m = match state.service.message_by_id(me, msg_id).await {
        Ok(m) if !m.is_deleted() => m,
        Ok(_) => return Err(not_found()),
        Err(e) if e.code == ErrorCode::NotFound => return Err(not_found()),
        Err(e) if e.code == ErrorCode::NotParticipant => return Err(RcError::not_allowed()),
        Err(e) => return Err(e.into()),
    };
    if m.conversation_id != room_id {
        return Err(RcError::plain(
            "The room id provided does not match where the message is from.",
        ));
    }
    Ok(m)
}

/// `POST /api/v1/chat.update`: `{roomId, msgId, text}`.
pub async fn update(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let b = check(
        &body,
        &[
            req("roomId", Ty::Str),
            req("msgId", Ty::Str),
            req("text", Ty::Str),
            opt("previewUrls", Ty::Arr),
            opt("customFields", Ty::Obj),
        ],
        false,
    )
    .map_err(RcError::typed_body)?;
    let (room_id, msg_id) = (
        b["roomId"].as_str().unwrap_or_default(),
        b["msgId"].as_str().unwrap_or_default(),
    );
    let m = message_in_room(&state, &me, room_id, msg_id).await?;
    if m.sender_id != me.id {
        return Err(RcError::meteor(
            "error-action-not-allowed",
            "Message editing not allowed",
        ));
    }
    let metadata = b.get("customFields").map(|cf| {
        let mut md = m.metadata.as_object().cloned().unwrap_or_default();
        md.insert("customFields".into(), cf.clone());
        Value::Object(md)
    });
    let text = b["text"].as_str().unwrap_or_default().to_owned();
    let edited = state
        .service
        .edit(&me, &m.conversation_id, &m.id, text, metadata)
        .await?;
    let view = state.service.decorate(vec![edited]).await?.remove(0);
    Ok(success(json!({ "message": render::message(&view) })))
}

/// `POST /api/v1/chat.delete`: `{roomId, msgId, asUser?}`.
pub async fn delete(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let b = check(
        &body,
        &[
            req("roomId", Ty::Str),
            req("msgId", Ty::Str),
            opt("asUser", Ty::Bool),
        ],
        false,
    )
    .map_err(RcError::typed_body)?;
    let (room_id, msg_id) = (
        b["roomId"].as_str().unwrap_or_default(),
        b["msgId"].as_str().unwrap_or_default(),
    );
    let m = message_in_room(&state, &me, room_id, msg_id).await?;
    if m.sender_id != me.id {
        return Err(RcError::meteor_with(
            "error-action-not-allowed",
            "Not allowed",
            json!({ "method": "deleteMessage", "action": "Delete_message" }),
        ));
    }
    let d = state
        .service
        .delete_message(&me, &m.conversation_id, &m.id)
        .await?;
    Ok(success(json!({
        "_id": d.id,
        "ts": d.deleted_at.unwrap_or(d.updated_at).to_string(),
        "message": {
            "_id": d.id,
            "rid": d.conversation_id,
            "u": render::user_ref(Some(&me), &me.id),
        },
    })))
}

/// The reaction name inside `:name:`, if it is a well-formed short name.
fn emoji_name(raw: &str) -> Option<String> {
    let bare = raw.trim().trim_matches(':');
    let ok = !bare.is_empty()
        && bare.len() <= 64
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'+');
    ok.then(|| bare.to_owned())
}

/// `POST /api/v1/chat.react`: `{messageId, emoji | reaction, shouldReact?}`; toggles unless
/// `shouldReact` says which way.
pub async fn react(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let b = check(
        &body,
        &[
            req("messageId", Ty::Str),
            opt("emoji", Ty::Str),
            opt("reaction", Ty::Str),
            opt("shouldReact", Ty::Bool),
        ],
        false,
    )
    .map_err(RcError::typed_body)?;
    let raw = match (b.get("emoji"), b.get("reaction")) {
        (Some(e), _) | (None, Some(e)) => e.as_str().unwrap_or_default().to_owned(),
        (None, None) => {
            return Err(RcError::typed_body("must have required property 'emoji'"));
        }
    };
    let name = emoji_name(&raw)
        .ok_or_else(|| RcError::meteor("error-not-allowed", "Invalid emoji provided."))?;
    let msg_id = b["messageId"].as_str().unwrap_or_default();
    let should = b.get("shouldReact").and_then(Value::as_bool);
    state
        .service
        .react_by_id(&me, msg_id, name, should)
        .await
        .map_err(|e| match e.code {
            ErrorCode::NotFound => RcError::meteor(
                "error-message-not-found",
                "The provided \"messageId\" does not match any existing message.",
            ),
            _ => e.into(),
        })?;
    Ok(success(json!({})))
}

/// `GET /api/v1/chat.getMessage?msgId=`.
pub async fn get_message(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query_object(uri.query())?;
    let q = check(&q, &[req("msgId", Ty::Str)], true).map_err(RcError::typed_query)?;
    let Some(msg_id) = str_of(&q, "msgId") else {
        return Err(RcError::plain(
            "The \"msgId\" query parameter must be provided.",
        ));
    };
    let view = state
        .service
        .message_view(&me, msg_id)
        .await
        .map_err(|e| match e.code {
            ErrorCode::NotFound => RcError::meteor("error-invalid-message", "Invalid message"),
            _ => e.into(),
        })?;
    if !super::sync::visible_in_updates(&view.message) {
        return Err(RcError::meteor("error-invalid-message", "Invalid message"));
    }
    Ok(success(json!({ "message": render::message(&view) })))
}

/// The thread endpoints' errors (docs/rocketchat.md, "chat.syncThreadMessages").
pub fn thread_error(e: Error) -> RcError {
    match e.code {
        ErrorCode::NotFound => RcError::meteor("error-invalid-message", "Invalid Message"),
        ErrorCode::NotParticipant | ErrorCode::Forbidden => {
            RcError::meteor("error-not-allowed", "Not Allowed")
        }
        _ => e.into(),
    }
}

pub fn threads_disabled() -> RcError {
    RcError::meteor("error-not-allowed", "Threads Disabled")
}

/// `sort` as `parseJsonQuery` checks it: a JSON object whose values are 1 or -1. Answers the
/// first key and whether it is descending.
pub fn parse_sort(raw: Option<&str>) -> RcResult<Option<(String, bool)>> {
    let Some(raw) = raw else { return Ok(None) };
    let bad = || {
        RcError::meteor(
            "error-invalid-sort",
            format!("Invalid sort parameter provided: \"{raw}\""),
        )
    };
    let v: Value = serde_json::from_str(raw).map_err(|_| bad())?;
    let o = v.as_object().ok_or_else(bad)?;
    for val in o.values() {
        if val.as_i64() != Some(1) && val.as_i64() != Some(-1) {
            return Err(bad());
        }
    }
    Ok(o.iter()
        .next()
        .map(|(k, v)| (k.clone(), v.as_i64() == Some(-1))))
}

/// `GET /api/v1/chat.getThreadMessages?tmid=&count=&offset=&sort=`.
pub async fn get_thread_messages(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query_object(uri.query())?;
    let q = check(
        &q,
        &[
            req("tmid", Ty::NonEmptyStr),
            nullable("count", Ty::Num),
            nullable("offset", Ty::Num),
            nullable("sort", Ty::Str),
        ],
        true,
    )
    .map_err(RcError::invalid_params)?;
    let sort = parse_sort(q.get("sort").and_then(Value::as_str))?;
    if !state.service.config().threads_enabled {
        return Err(threads_disabled());
    }
    let count = match q.get("count").and_then(Value::as_f64) {
        Some(n) if n >= 1.0 => (n as i64).min(100),
        _ => 50,
    };
    let offset = q
        .get("offset")
        .and_then(Value::as_f64)
        .map_or(0, |n| n.max(0.0) as i64);
    let descending = sort.is_some_and(|(_, desc)| desc);
    let tmid = str_of(&q, "tmid").unwrap_or_default();
    let (page, total) = state
        .service
        .thread_replies(&me, tmid, offset, count, descending)
        .await
        .map_err(thread_error)?;
    Ok(success(json!({
        "messages": page.iter().map(render::message).collect::<Vec<_>>(),
        "count": page.len(),
        "offset": offset,
        "total": total,
    })))
}
