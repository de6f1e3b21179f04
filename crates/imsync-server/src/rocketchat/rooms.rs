//! Rooms: `im.create`, `channels.*` / `groups.*` create, join, invite and kick, and the
//! `rooms.get` / `subscriptions.get` change lists (`{update, remove}` after `updatedSince`).

use super::auth::RcAuth;
use super::error::{RcError, RcResult};
use super::params::{check, js_date_parse, nullable, opt, query_object, req, str_of, RcBody, Ty};
use super::{render, success};
use crate::app::AppState;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use imsync_core::model::User;
use imsync_core::{Error, ErrorCode};
use imsync_service::ConversationWithMembers;
use serde_json::{json, Map, Value};

fn default_channel(state: &AppState) -> Option<&str> {
    state.service.config().default_channel.as_deref()
}

fn detail(state: &AppState, c: &ConversationWithMembers) -> Value {
    render::room_detail(c, default_channel(state))
}

fn invalid_user() -> RcError {
    RcError::meteor("error-invalid-user", "Invalid user")
}

/// `POST /api/v1/im.create`: `{username}`.
pub async fn im_create(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let b = check(
        &body,
        &[req("username", Ty::Str), opt("excludeSelf", Ty::Bool)],
        false,
    )
    .map_err(RcError::typed_body)?;
    let username = str_of(&b, "username").ok_or_else(invalid_user)?;
    let (conv, _) = state
        .service
        .open_direct(&me, username, None)
        .await
        .map_err(|e| match e.code {
            ErrorCode::NotFound | ErrorCode::InvalidRequest => invalid_user(),
            _ => e.into(),
        })?;
    let mut room = detail(&state, &conv);
    room["rid"] = json!(conv.conversation.id);
    Ok(success(json!({ "room": room })))
}

fn valid_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

async fn create(
    state: &AppState,
    me: &User,
    body: Map<String, Value>,
    public: bool,
) -> RcResult<ConversationWithMembers> {
    let b = check(
        &body,
        &[
            req("name", Ty::Str),
            opt("members", Ty::Arr),
            opt("readOnly", Ty::Bool),
            opt("excludeSelf", Ty::Bool),
            opt("customFields", Ty::Obj),
            opt("extraData", Ty::Obj),
        ],
        false,
    )
    .map_err(RcError::typed_body)?;
    let name = b["name"].as_str().unwrap_or_default().to_owned();
    if !valid_room_name(&name) {
        return Err(RcError::meteor(
            "error-invalid-room-name",
            format!("{name} is not a valid room name"),
        ));
    }
    let members: Vec<String> = b
        .get("members")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    state
        .service
        .create_room(me, name.clone(), public, members)
        .await
        .map_err(|e| match e.code {
            ErrorCode::Conflict => RcError::meteor(
                "error-duplicate-channel-name",
                format!("A channel with name '{name}' exists"),
            ),
            ErrorCode::NotFound => invalid_user(),
            _ => e.into(),
        })
}

/// `POST /api/v1/channels.create`: a public channel.
pub async fn channels_create(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let c = create(&state, &me, body, true).await?;
    Ok(success(json!({ "channel": detail(&state, &c) })))
}

/// `POST /api/v1/groups.create`: a private group.
pub async fn groups_create(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let c = create(&state, &me, body, false).await?;
    Ok(success(json!({ "group": detail(&state, &c) })))
}

fn room_not_found() -> RcError {
    RcError::meteor(
        "error-room-not-found",
        "The required \"roomId\" or \"roomName\" param provided does not match any channel",
    )
}

/// The room a body names by `roomId` or `roomName`.
async fn named_room(state: &AppState, b: &Map<String, Value>) -> RcResult<String> {
    let reference = str_of(b, "roomId")
        .or_else(|| str_of(b, "roomName"))
        .ok_or_else(|| {
            RcError::meteor(
                "error-room-param-not-provided",
                "The parameter \"roomId\" or \"roomName\" is required",
            )
        })?;
    match state.service.find_room(reference).await {
        Ok(c) => Ok(c.id),
        Err(e) if e.code == ErrorCode::NotFound => Err(room_not_found()),
        Err(e) => Err(e.into()),
    }
}

fn membership_error(e: Error) -> RcError {
    match e.code {
        ErrorCode::NotFound if e.message.starts_with("User") => invalid_user(),
        ErrorCode::NotFound => room_not_found(),
        _ => e.into(),
    }
}

/// `POST /api/v1/channels.join`: `{roomId | roomName, joinCode?}`.
pub async fn channels_join(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let b = check(
        &body,
        &[
            opt("roomId", Ty::Str),
            opt("roomName", Ty::Str),
            nullable("joinCode", Ty::Str),
        ],
        false,
    )
    .map_err(RcError::typed_body)?;
    let rid = named_room(&state, &b).await?;
    let c = state
        .service
        .join_public(&me, &rid)
        .await
        .map_err(membership_error)?;
    Ok(success(json!({ "channel": detail(&state, &c) })))
}

async fn invite(state: &AppState, me: &User, body: Map<String, Value>) -> RcResult<Value> {
    let b = check(
        &body,
        &[
            opt("roomId", Ty::Str),
            opt("roomName", Ty::Str),
            opt("userId", Ty::Str),
            opt("userIds", Ty::Arr),
        ],
        false,
    )
    .map_err(RcError::typed_body)?;
    let rid = named_room(state, &b).await?;
    let mut users: Vec<String> = b
        .get("userIds")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(u) = str_of(&b, "userId") {
        users.insert(0, u.to_owned());
    }
    if users.is_empty() {
        return Err(RcError::meteor(
            "error-user-param-not-provided",
            "The required \"userId\" or \"username\" param was not provided",
        ));
    }
    for u in &users {
        match state.service.add_participant(me, &rid, u, None).await {
            Ok(_) => {}
            // Inviting someone already in the room is not an error in Rocket.Chat.
            Err(e) if e.code == ErrorCode::Conflict => {}
            Err(e) => return Err(membership_error(e)),
        }
    }
    let c = state
        .service
        .conversation(me, &rid)
        .await
        .map_err(membership_error)?;
    Ok(detail(state, &c))
}

/// `POST /api/v1/channels.invite`: `{roomId | roomName, userId | userIds}`.
pub async fn channels_invite(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let room = invite(&state, &me, body).await?;
    Ok(success(json!({ "channel": room })))
}

/// `POST /api/v1/groups.invite`.
pub async fn groups_invite(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let room = invite(&state, &me, body).await?;
    Ok(success(json!({ "group": room })))
}

async fn kick(state: &AppState, me: &User, body: Map<String, Value>) -> RcResult<String> {
    let b = check(
        &body,
        &[
            opt("roomId", Ty::Str),
            opt("roomName", Ty::Str),
            req("userId", Ty::Str),
        ],
        false,
    )
    .map_err(RcError::typed_body)?;
    let rid = named_room(state, &b).await?;
    let target = state
        .service
        .find_user(str_of(&b, "userId").unwrap_or_default())
        .await
        .map_err(|_| invalid_user())?;
    state
        .service
        .remove_participant(me, &rid, &target.id)
        .await
        .map_err(|e| match e.code {
            ErrorCode::NotFound if e.message.starts_with("Participant") => {
                RcError::meteor("error-user-not-in-room", "User is not in this room")
            }
            _ => membership_error(e),
        })?;
    Ok(rid)
}

/// `POST /api/v1/channels.kick`: `{roomId | roomName, userId}`.
pub async fn channels_kick(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let rid = kick(&state, &me, body).await?;
    let c = state.service.conversation(&me, &rid).await?;
    Ok(success(json!({ "channel": detail(&state, &c) })))
}

/// `POST /api/v1/groups.kick`.
pub async fn groups_kick(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    kick(&state, &me, body).await?;
    Ok(success(json!({})))
}

/// `updatedSince` of `rooms.get` / `subscriptions.get`.
fn updated_since(uri: &Uri) -> RcResult<Option<i64>> {
    let q = query_object(uri.query())?;
    let q = check(&q, &[opt("updatedSince", Ty::Str)], true).map_err(RcError::typed_query)?;
    match str_of(&q, "updatedSince") {
        None => Ok(None),
        Some(s) => js_date_parse(s).map(Some).ok_or_else(|| {
            RcError::meteor(
                "error-updatedSince-param-invalid",
                "The \"updatedSince\" query parameter must be a valid date.",
            )
        }),
    }
}

/// `GET /api/v1/rooms.get?updatedSince=`.
pub async fn rooms_get(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let since = updated_since(&uri)?;
    let changes = state.service.rooms_changed(&me, since).await?;
    let dc = default_channel(&state);
    Ok(success(json!({
        "update": changes.update.iter().map(|r| render::room(r, dc)).collect::<Vec<_>>(),
        "remove": changes.remove.iter().map(|(rid, at)| json!({ "_id": rid, "_deletedAt": render::iso(*at) })).collect::<Vec<_>>(),
    })))
}

/// `GET /api/v1/subscriptions.get?updatedSince=`.
pub async fn subscriptions_get(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let since = updated_since(&uri)?;
    let changes = state.service.rooms_changed(&me, since).await?;
    Ok(success(json!({
        "update": changes.update.iter().map(|r| render::subscription(r, &me)).collect::<Vec<_>>(),
        "remove": changes.remove.iter().map(|(rid, at)| json!({
            "_id": render::subscription_id(rid, &me.id),
            "rid": rid,
            "_deletedAt": render::iso(*at),
        })).collect::<Vec<_>>(),
    })))
}
