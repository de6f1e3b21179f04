//! DDP methods: `login` (password, SHA-256 digest, `resume`), `logout`, and the room and message
//! calls Rocket.Chat's bots and SDKs make. Errors are Meteor errors with Rocket.Chat's codes; an
//! unknown method is Meteor's 404.

use super::protocol::{self, MethodError};
use super::{Conn, Login};
use crate::rocketchat::render;
use imsync_core::model::{Message, User};
use imsync_core::{Error, ErrorCode};
use imsync_service::{MessageView, NewMessage, Password};
use serde_json::{json, Map, Value};

type MethodResult = Result<Value, MethodError>;

/// Handles a `method` frame: its `result`, then `updated`.
pub(crate) async fn call(conn: &mut Conn, frame: &Value) {
    let Some(id) = frame.get("id").filter(|v| v.is_string()).cloned() else {
        conn.out.push(protocol::error("Bad request", Some(frame)));
        return;
    };
    let name = frame
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let params = match frame.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            conn.out.push(protocol::error("Bad request", Some(frame)));
            return;
        }
    };
    let outcome = dispatch(conn, &name, &params).await;
    conn.out.push(protocol::result(&id, outcome));
    conn.out.push(protocol::updated(&id));
}

fn not_found(name: &str) -> MethodError {
    MethodError::new(404, format!("Method '{name}' not found"))
}

fn invalid_user(method: &str) -> MethodError {
    MethodError::new("error-invalid-user", "Invalid user").with_details(json!({ "method": method }))
}

fn not_allowed(method: &str) -> MethodError {
    MethodError::new("error-not-allowed", "Not allowed").with_details(json!({ "method": method }))
}

fn invalid_room(method: &str) -> MethodError {
    MethodError::new("error-invalid-room", "Invalid room").with_details(json!({ "method": method }))
}

/// A service error no method words more precisely.
fn internal(e: Error) -> MethodError {
    match e.code {
        ErrorCode::Internal | ErrorCode::Unavailable => {
            tracing::warn!(error = %e.message, "DDP method failed");
            MethodError::new(500, "Internal server error")
        }
        ErrorCode::RateLimited => MethodError::new("too-many-requests", e.message),
        _ => MethodError::new(400, e.message),
    }
}

/// Errors of calls on a room: a room that is not there, or not the caller's.
fn room_error(method: &str, e: Error) -> MethodError {
    match e.code {
        ErrorCode::NotFound => invalid_room(method),
        ErrorCode::NotParticipant | ErrorCode::Forbidden => not_allowed(method),
        _ => internal(e),
    }
}

fn str_param(params: &[Value], i: usize) -> Option<&str> {
    params.get(i).and_then(Value::as_str)
}

fn match_failed() -> MethodError {
    MethodError::new(400, "Match failed")
}

async fn dispatch(conn: &mut Conn, name: &str, params: &[Value]) -> MethodResult {
    match name {
        "login" => return login(conn, params).await,
        "logout" => return logout(conn).await,
        _ => {}
    }
    let known = matches!(
        name,
        "rooms/get"
            | "subscriptions/get"
            | "sendMessage"
            | "getRoomIdByNameOrId"
            | "getRoomNameById"
            | "joinRoom"
            | "createDirectMessage"
            | "setReaction"
            | "readMessages"
            | "UserPresence:setDefaultStatus"
            | "UserPresence:online"
            | "UserPresence:away"
            | "stream-notify-room"
    );
    if !known {
        return Err(not_found(name));
    }
    let Some(me) = conn.login.as_ref().map(|l| l.user.clone()) else {
        return Err(invalid_user(name));
    };
    let service = conn.state.service.clone();
    let default_channel = service.config().default_channel.clone();
    match name {
        "rooms/get" => {
            let since = since_param(params)?;
            let changes = service.rooms_changed(&me, since).await.map_err(internal)?;
            let update: Vec<Value> = changes
                .update
                .iter()
                .map(|r| protocol::ejson(render::room(r, default_channel.as_deref())))
                .collect();
            Ok(changes_result(
                since,
                update,
                &changes.remove,
                |rid| json!({ "_id": rid }),
            ))
        }
        "subscriptions/get" => {
            let since = since_param(params)?;
            let changes = service.rooms_changed(&me, since).await.map_err(internal)?;
            let update: Vec<Value> = changes
                .update
                .iter()
                .map(|r| protocol::ejson(render::subscription(r, &me)))
                .collect();
            Ok(changes_result(
                since,
                update,
                &changes.remove,
                |rid| json!({ "_id": render::subscription_id(rid, &me.id), "rid": rid }),
            ))
        }
        "sendMessage" => send_message(conn, &me, params).await,
        "getRoomIdByNameOrId" => {
            let reference = str_param(params, 0).ok_or_else(match_failed)?;
            let room = readable_room(conn, &me, reference, name).await?;
            Ok(json!(room.id))
        }
        "getRoomNameById" => {
            let reference = str_param(params, 0).ok_or_else(match_failed)?;
            let room = readable_room(conn, &me, reference, name).await?;
            Ok(json!(room.title.unwrap_or_default()))
        }
        "joinRoom" => {
            let rid = str_param(params, 0).ok_or_else(match_failed)?;
            service
                .join_public(&me, rid)
                .await
                .map_err(|e| room_error(name, e))?;
            Ok(json!(true))
        }
        "createDirectMessage" => {
            let username = str_param(params, 0).ok_or_else(match_failed)?;
            let (conv, _) =
                service
                    .open_direct(&me, username, None)
                    .await
                    .map_err(|e| match e.code {
                        ErrorCode::NotFound | ErrorCode::InvalidRequest => invalid_user(name),
                        _ => internal(e),
                    })?;
            let rid = conv.conversation.id;
            Ok(json!({ "rid": rid, "_id": rid, "t": "d" }))
        }
        "setReaction" => {
            let reaction = str_param(params, 0).ok_or_else(match_failed)?;
            let msg_id = str_param(params, 1).ok_or_else(match_failed)?;
            let should = params.get(2).and_then(Value::as_bool);
            let bare = reaction.trim().trim_matches(':');
            let well_formed = !bare.is_empty()
                && bare.len() <= 64
                && bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'));
            if !well_formed {
                return Err(
                    MethodError::new("error-not-allowed", "Invalid emoji provided.")
                        .with_details(json!({ "method": name })),
                );
            }
            service
                .react_by_id(&me, msg_id, bare.to_owned(), should)
                .await
                .map_err(|e| match e.code {
                    ErrorCode::NotFound | ErrorCode::NotParticipant | ErrorCode::Forbidden => {
                        not_allowed(name)
                    }
                    _ => internal(e),
                })?;
            Ok(Value::Null)
        }
        "readMessages" => {
            let rid = str_param(params, 0).ok_or_else(match_failed)?;
            service
                .mark_read(&me, rid)
                .await
                .map_err(|e| room_error(name, e))?;
            Ok(Value::Null)
        }
        // Presence follows the connection and typing notices (`stream-notify-room` called as a
        // method) are not relayed: these are accepted and change nothing.
        _ => Ok(Value::Null),
    }
}

/// `rooms/get` and `subscriptions/get` answer a list, or, given a date, `{update, remove}`.
fn changes_result(
    since: Option<i64>,
    update: Vec<Value>,
    remove: &[(String, i64)],
    removed: impl Fn(&str) -> Value,
) -> Value {
    match since {
        None => Value::Array(update),
        Some(_) => {
            let remove: Vec<Value> = remove
                .iter()
                .map(|(rid, at)| {
                    let mut v = removed(rid);
                    v["_deletedAt"] = protocol::date(*at);
                    v
                })
                .collect();
            json!({ "update": update, "remove": remove })
        }
    }
}

/// The optional `{"$date": ms}` of `rooms/get` and `subscriptions/get`.
fn since_param(params: &[Value]) -> Result<Option<i64>, MethodError> {
    match params.first() {
        None | Some(Value::Null) => Ok(None),
        Some(v) => protocol::parse_date(v).map(Some).ok_or_else(match_failed),
    }
}

/// A room by id or name that the caller may read: theirs, or a public channel.
async fn readable_room(
    conn: &Conn,
    me: &User,
    reference: &str,
    method: &str,
) -> Result<imsync_core::model::Conversation, MethodError> {
    let service = &conn.state.service;
    let room = service
        .find_room(reference)
        .await
        .map_err(|e| room_error(method, e))?;
    if room.public {
        return Ok(room);
    }
    match service.room(me, &room.id).await {
        Ok(_) => Ok(room),
        Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::NotParticipant) => {
            Err(not_allowed(method))
        }
        Err(e) => Err(internal(e)),
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

/// `sendMessage`: `[{_id?, rid, msg, tmid?, …}]`. A client `_id` that names a message the caller
/// already sent to that room answers that message, so a retried call sends once.
async fn send_message(conn: &Conn, me: &User, params: &[Value]) -> MethodResult {
    const NAME: &str = "sendMessage";
    let msg = params
        .first()
        .and_then(Value::as_object)
        .ok_or_else(match_failed)?;
    for k in ["_id", "rid", "msg", "tmid"] {
        if msg.get(k).is_some_and(|v| !v.is_string() && !v.is_null()) {
            return Err(match_failed());
        }
    }
    let text = |k: &str| {
        msg.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let rid = text("rid").ok_or_else(|| invalid_room(NAME))?;
    let client_id = text("_id");
    let new = NewMessage {
        content: text("msg").unwrap_or_default(),
        metadata: Some(extra_fields(msg)),
        parent_id: text("tmid"),
        id: client_id.clone(),
        ..Default::default()
    };
    let service = &conn.state.service;
    let sent = match service.send(me, &rid, new).await {
        Ok(out) => fresh(out.message, me),
        Err(e) if e.code == ErrorCode::Conflict && client_id.is_some() => {
            let id = client_id.unwrap_or_default();
            match service.message_view(me, &id).await {
                Ok(v) if v.message.sender_id == me.id && v.message.conversation_id == rid => v,
                _ => {
                    return Err(MethodError::new(
                        "error-message-already-exists",
                        "A message with this _id already exists",
                    ))
                }
            }
        }
        Err(e) => {
            return Err(match e.code {
                ErrorCode::InvalidRequest if e.message.contains("parentId") => {
                    MethodError::new("error-invalid-message", "Invalid thread message")
                }
                ErrorCode::InvalidRequest => MethodError::new(400, e.message),
                _ => room_error(NAME, e),
            })
        }
    };
    Ok(message_doc(&sent))
}

/// A view of a message the caller just wrote: no reactions or replies yet.
fn fresh(message: Message, me: &User) -> MessageView {
    MessageView {
        message,
        sender: Some(me.clone()),
        edited_by: None,
        reactions: Vec::new(),
        replies: Vec::new(),
    }
}

/// A message as DDP carries it: the REST document with EJSON dates; a deleted message as
/// Rocket.Chat shows a removed one.
pub(crate) fn message_doc(v: &MessageView) -> Value {
    let mut doc = protocol::ejson(render::message(v));
    if v.message.is_deleted() && !render::is_removed_parent(&v.message) {
        doc["t"] = json!("rm");
        doc["msg"] = json!("");
        if let Some(o) = doc.as_object_mut() {
            o.remove("reactions");
            o.remove("attachments");
        }
    }
    doc
}

fn login_failed(reason: &str) -> MethodError {
    MethodError::new(403, reason)
}

async fn login(conn: &mut Conn, params: &[Value]) -> MethodResult {
    let service = conn.state.service.clone();
    let Some(p) = params.first().and_then(Value::as_object) else {
        return Err(MethodError::new(
            400,
            "Unrecognized options for login request",
        ));
    };
    let (user, token, expires_at, kind) = if let Some(resume) = p.get("resume") {
        let token = resume.as_str().ok_or_else(match_failed)?;
        let (user, key) = service
            .authenticate_session(token)
            .await
            .map_err(|e| match e.code {
                ErrorCode::Internal | ErrorCode::Unavailable => internal(e),
                _ => login_failed("You've been logged out by the server. Please log in again."),
            })?;
        (user, token.to_owned(), key.expires_at, "resume")
    } else if let Some(u) = p.get("user") {
        let name = match u {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o
                .get("username")
                .or_else(|| o.get("email"))
                .and_then(Value::as_str),
            _ => None,
        }
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(match_failed)?
        .to_owned();
        let password = match p.get("password") {
            Some(Value::String(s)) => Password::Plain(s),
            Some(Value::Object(o))
                if o.get("algorithm").and_then(Value::as_str) == Some("sha-256") =>
            {
                Password::Sha256Hex(o.get("digest").and_then(Value::as_str).unwrap_or_default())
            }
            _ => return Err(match_failed()),
        };
        let session = match service.login_with(&name, password).await {
            Ok(s) => s,
            Err(e) if matches!(e.code, ErrorCode::Internal | ErrorCode::Unavailable) => {
                return Err(internal(e))
            }
            Err(e) if e.code == ErrorCode::AccountDisabled => return Err(login_failed(&e.message)),
            Err(_) => {
                return Err(match service.user_by_username(&name).await {
                    Ok(_) => login_failed("Incorrect password"),
                    Err(_) => login_failed("User not found"),
                })
            }
        };
        (session.user, session.token, session.expires_at, "password")
    } else {
        return Err(MethodError::new(
            400,
            "Unrecognized options for login request",
        ));
    };
    // As a REST login: an account that was never in the default channel joins it.
    if let Err(e) = service.ensure_default_channel(&user).await {
        tracing::warn!(error = %e, user = %user.id, "could not join the default channel");
    }
    let key = imsync_service::hub::SessionKey {
        token_hash: imsync_core::ids::token_hash(&token).into(),
        expires_at,
    };
    let result = json!({
        "id": user.id,
        "token": token,
        "tokenExpires": protocol::date(expires_at),
        "type": kind,
    });
    conn.set_login(Some(Login { user, token, key }));
    Ok(result)
}

/// `logout`: the session ends everywhere; the connection stays open, anonymous.
async fn logout(conn: &mut Conn) -> MethodResult {
    let Some(login) = conn.login.take() else {
        return Ok(Value::Null);
    };
    // The hub subscription goes first, so that the session's end does not close this socket.
    conn.set_login(None);
    conn.state
        .service
        .logout(&login.token)
        .await
        .map_err(internal)?;
    Ok(Value::Null)
}
