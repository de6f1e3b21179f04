//! The calls bots and SDKs make around a live DDP session: server info, user lookup and
//! registration, the caller's room lists, room info, members, history, leaving, and the caller's
//! subscription of one room (read it, mark it read). They read the same rooms, memberships, read
//! pointers and messages as the other faces.

use super::auth::RcAuth;
use super::error::{RcError, RcResult};
use super::params::{check, js_date_parse, nullable, opt, query_object, req, str_of, RcBody, Ty};
use super::{render, success};
use crate::app::AppState;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use imsync_core::model::{ConversationKind, User};
use imsync_core::ErrorCode;
use imsync_service::{NewAccount, RoomView, TimeWindow};
use serde_json::{json, Map, Value};

/// The Rocket.Chat version imsync's face follows.
pub const COMPATIBLE_VERSION: &str = "6.0.0";

/// `GET /api/info`: the server's version, without credentials.
pub async fn info() -> RcResult<Response> {
    Ok(success(json!({ "version": COMPATIBLE_VERSION })))
}

pub(super) fn query(uri: &Uri, props: &[super::params::Prop]) -> RcResult<Map<String, Value>> {
    let q = query_object(uri.query())?;
    check(&q, props, true).map_err(RcError::typed_query)
}

/// A user as `users.info` and `users.list` show them.
pub(super) fn user_doc(u: &User) -> Value {
    let mut v = render::me(u);
    if let Some(o) = v.as_object_mut() {
        for k in ["settings", "services", "requirePasswordChange", "emails"] {
            o.remove(k);
        }
    }
    v
}

/// `GET /api/v1/users.info?userId= | username=`.
pub async fn users_info(
    State(state): State<AppState>,
    RcAuth(_, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query(
        &uri,
        &[
            opt("userId", Ty::Str),
            opt("username", Ty::Str),
            opt("fields", Ty::Str),
        ],
    )?;
    let found = match (str_of(&q, "userId"), str_of(&q, "username")) {
        (Some(id), _) => state.service.user(id).await,
        (None, Some(name)) => state.service.user_by_username(name).await,
        (None, None) => {
            return Err(RcError::meteor(
                "error-user-param-not-provided",
                "The required \"userId\" or \"username\" param was not provided",
            ))
        }
    };
    let user = found.map_err(|e| match e.code {
        ErrorCode::NotFound => RcError::meteor("error-invalid-user", "Invalid user"),
        _ => e.into(),
    })?;
    Ok(success(json!({ "user": user_doc(&user) })))
}

/// `POST /api/v1/users.register`: `{username, email, pass, name}`, as a visitor signs up.
pub async fn users_register(
    State(state): State<AppState>,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let b = check(
        &body,
        &[
            req("username", Ty::Str),
            req("email", Ty::Str),
            req("pass", Ty::Str),
            req("name", Ty::Str),
            opt("secretURL", Ty::Str),
            opt("reason", Ty::Str),
        ],
        false,
    )
    .map_err(RcError::typed_body)?;
    let username = str_of(&b, "username").unwrap_or_default().to_owned();
    let account = NewAccount {
        username: username.clone(),
        display_name: str_of(&b, "name")
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned),
        password: str_of(&b, "pass").map(str::to_owned),
        ..Default::default()
    };
    let session = state
        .service
        .register(None, account)
        .await
        .map_err(|e| match e.code {
            ErrorCode::UsernameTaken => RcError::meteor(
                "error-field-unavailable",
                format!("{username} is already in use :("),
            ),
            ErrorCode::RegistrationClosed => RcError::meteor(
                "error-user-registration-disabled",
                "User registration is disabled",
            ),
            ErrorCode::InvalidRequest => RcError::plain(e.message),
            _ => e.into(),
        })?;
    Ok(success(json!({ "user": user_doc(&session.user) })))
}

/// The caller's rooms of the given types.
async fn my_rooms(state: &AppState, me: &User, types: &[&str]) -> RcResult<Vec<RoomView>> {
    let changes = state.service.rooms_changed(me, None).await?;
    Ok(changes
        .update
        .into_iter()
        .filter(|r| types.contains(&render::room_type(&r.conversation)))
        .collect())
}

pub(super) fn default_channel(state: &AppState) -> Option<&str> {
    state.service.config().default_channel.as_deref()
}

/// `count` and `offset` of a list call, as Rocket.Chat reads them (count 0 means all).
pub(super) fn paging(q: &Map<String, Value>) -> (usize, usize) {
    let num = |k: &str| {
        q.get(k)
            .and_then(Value::as_f64)
            .map(|n| n.max(0.0) as usize)
    };
    (num("count").unwrap_or(50), num("offset").unwrap_or(0))
}

pub(super) fn page<T>(items: Vec<T>, count: usize, offset: usize) -> (Vec<T>, usize) {
    let total = items.len();
    let take = if count == 0 { usize::MAX } else { count };
    (items.into_iter().skip(offset).take(take).collect(), total)
}

pub(super) const LIST_QUERY: &[super::params::Prop] = &[
    nullable("count", Ty::Num),
    nullable("offset", Ty::Num),
    nullable("sort", Ty::Str),
    nullable("query", Ty::Str),
    nullable("fields", Ty::Str),
];

async fn room_list(
    state: &AppState,
    me: &User,
    uri: &Uri,
    types: &[&str],
    key: &str,
) -> RcResult<Response> {
    let q = query(uri, LIST_QUERY)?;
    let (count, offset) = paging(&q);
    let rooms = my_rooms(state, me, types).await?;
    let (rooms, total) = page(rooms, count, offset);
    let dc = default_channel(state);
    let docs: Vec<Value> = rooms.iter().map(|r| render::room(r, dc)).collect();
    let mut out = Map::new();
    out.insert("count".into(), json!(docs.len()));
    out.insert(key.into(), Value::Array(docs));
    out.insert("offset".into(), json!(offset));
    out.insert("total".into(), json!(total));
    Ok(success(Value::Object(out)))
}

/// `GET /api/v1/channels.list.joined`: the caller's public channels.
pub async fn channels_list_joined(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    room_list(&state, &me, &uri, &["c"], "channels").await
}

/// `GET /api/v1/groups.list`: the caller's private groups.
pub async fn groups_list(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    room_list(&state, &me, &uri, &["p"], "groups").await
}

/// `GET /api/v1/im.list` and `dm.list`: the caller's direct rooms.
pub async fn im_list(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    room_list(&state, &me, &uri, &["d"], "ims").await
}

pub(super) fn room_not_found() -> RcError {
    RcError::meteor(
        "error-room-not-found",
        "The required \"roomId\" or \"roomName\" param provided does not match any channel",
    )
}

/// One of the caller's rooms, named by `roomId` or `roomName` in a query or body.
pub(super) async fn my_room(
    state: &AppState,
    me: &User,
    q: &Map<String, Value>,
) -> RcResult<RoomView> {
    let reference = str_of(q, "roomId")
        .or_else(|| str_of(q, "roomName"))
        .or_else(|| str_of(q, "rid"))
        .ok_or_else(|| {
            RcError::meteor(
                "error-room-param-not-provided",
                "The parameter \"roomId\" or \"roomName\" is required",
            )
        })?;
    let conv = match state.service.find_room(reference).await {
        Ok(c) => c,
        Err(e) if e.code == ErrorCode::NotFound => return Err(room_not_found()),
        Err(e) => return Err(e.into()),
    };
    match state.service.room(me, &conv.id).await {
        Ok(r) => Ok(r),
        Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::NotParticipant) => {
            Err(room_not_found())
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) const ROOM_QUERY: &[super::params::Prop] = &[
    opt("roomId", Ty::Str),
    opt("roomName", Ty::Str),
    nullable("fields", Ty::Str),
];

/// `GET /api/v1/channels.info`, `groups.info` and `rooms.info`.
async fn room_info(state: &AppState, me: &User, uri: &Uri, key: &str) -> RcResult<Response> {
    let q = query(uri, ROOM_QUERY)?;
    let r = my_room(state, me, &q).await?;
    let mut out = Map::new();
    out.insert(key.into(), render::room(&r, default_channel(state)));
    Ok(success(Value::Object(out)))
}

pub async fn channels_info(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    room_info(&state, &me, &uri, "channel").await
}

pub async fn groups_info(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    room_info(&state, &me, &uri, "group").await
}

pub async fn rooms_info(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    room_info(&state, &me, &uri, "room").await
}

/// `GET /api/v1/channels.members` and `groups.members`: present members.
pub async fn members(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query_object(uri.query())?;
    let q =
        check(&q, &dedup([ROOM_QUERY, LIST_QUERY].concat()), true).map_err(RcError::typed_query)?;
    let (count, offset) = paging(&q);
    let r = my_room(&state, &me, &q).await?;
    let conv = state.service.conversation(&me, &r.conversation.id).await?;
    let list: Vec<Value> = conv
        .members
        .iter()
        .map(|m| {
            json!({
                "_id": m.user.id,
                "username": m.user.username,
                "name": m.user.display_name,
                "status": if state.service.hub().presence(&m.user.id).0 { "online" } else { "offline" },
            })
        })
        .collect();
    let (list, total) = page(list, count, offset);
    Ok(success(json!({
        "count": list.len(),
        "members": list,
        "offset": offset,
        "total": total,
    })))
}

pub(super) fn dedup(props: Vec<super::params::Prop>) -> Vec<super::params::Prop> {
    let mut out: Vec<super::params::Prop> = Vec::new();
    for p in props {
        if !out.iter().any(|o| o.name == p.name) {
            out.push(p);
        }
    }
    out
}

/// A `latest` or `oldest` of a history call, as JavaScript's `new Date` reads it.
fn history_date(q: &Map<String, Value>, name: &str) -> RcResult<Option<i64>> {
    match str_of(q, name) {
        None => Ok(None),
        Some(s) => js_date_parse(s).map(Some).ok_or_else(|| {
            RcError::meteor(
                "error-invalid-date",
                format!("The \"{name}\" query parameter must be a valid date"),
            )
        }),
    }
}

/// `GET /api/v1/channels.history`, `groups.history`, `im.history`, `dm.history`,
/// `channels.messages`, `dm.messages`: the messages the caller may see created before `latest`
/// (now by default) and after `oldest` (both ends included with `inclusive=true`), newest first;
/// `offset` of them skipped, then at most `count` (50 by default, 100 at most).
pub async fn history(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query_object(uri.query())?;
    let q = check(
        &q,
        &dedup(
            [
                ROOM_QUERY,
                LIST_QUERY,
                &[
                    nullable("latest", Ty::Str),
                    nullable("oldest", Ty::Str),
                    nullable("inclusive", Ty::Str),
                    nullable("unreads", Ty::Str),
                    nullable("showThreadMessages", Ty::Str),
                    nullable("username", Ty::Str),
                ],
            ]
            .concat(),
        ),
        true,
    )
    .map_err(RcError::typed_query)?;
    let (count, offset) = paging(&q);
    let count = if count == 0 { 100 } else { count.min(100) };
    let window = TimeWindow {
        latest: history_date(&q, "latest")?,
        oldest: history_date(&q, "oldest")?,
        // Rocket.Chat compares the text with 'true'.
        inclusive: str_of(&q, "inclusive") == Some("true"),
    };
    let r = my_room(&state, &me, &q).await?;
    let (views, total) = state
        .service
        .history_window(&me, &r.conversation.id, window, offset as i64, count as i64)
        .await?;
    let messages: Vec<Value> = views.iter().map(render::message).collect();
    Ok(success(json!({
        "messages": messages,
        "count": messages.len(),
        "offset": offset,
        "total": total,
    })))
}

/// `POST /api/v1/channels.leave` and `groups.leave`: `{roomId | roomName}`.
pub async fn leave(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let b = check(
        &body,
        &[opt("roomId", Ty::Str), opt("roomName", Ty::Str)],
        false,
    )
    .map_err(RcError::typed_body)?;
    let r = my_room(&state, &me, &b).await?;
    if r.conversation.kind == ConversationKind::Direct {
        return Err(RcError::not_allowed());
    }
    state.service.leave(&me, &r.conversation.id).await?;
    Ok(success(json!({})))
}

/// `GET /api/v1/subscriptions.getOne?roomId=`.
pub async fn subscriptions_get_one(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query(&uri, &[req("roomId", Ty::Str)])?;
    let rid = str_of(&q, "roomId").unwrap_or_default();
    let sub = match state.service.room(&me, rid).await {
        Ok(r) => render::subscription(&r, &me),
        Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::NotParticipant) => Value::Null,
        Err(e) => return Err(e.into()),
    };
    Ok(success(json!({ "subscription": sub })))
}

/// `POST /api/v1/subscriptions.read`: `{rid | roomId}` marks the room read.
pub async fn subscriptions_read(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let b = check(
        &body,
        &[
            opt("rid", Ty::Str),
            opt("roomId", Ty::Str),
            opt("readThreads", Ty::Bool),
        ],
        false,
    )
    .map_err(RcError::typed_body)?;
    let r = my_room(&state, &me, &b).await?;
    state.service.mark_read(&me, &r.conversation.id).await?;
    Ok(success(json!({})))
}
