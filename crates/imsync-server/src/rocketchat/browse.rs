//! Directory and per-room state calls of the face: every account (`users.list`), the public
//! rooms (`channels.list`), a room's thread parents (`chat.getThreadsList`), the caller's counters
//! of a room (`channels.counters`) and marking a room unread (`subscriptions.unread`). Lists read
//! the shared rooms and accounts; counters and the unread mark read and move the one read pointer
//! every face shares.

use super::auth::RcAuth;
use super::chat::{parse_sort, thread_error, threads_disabled};
use super::directory::{
    dedup, default_channel, my_room, page, paging, query, room_not_found, user_doc, LIST_QUERY,
};
use super::error::{RcError, RcResult};
use super::params::{check, nullable, opt, query_object, req, str_of, RcBody, Ty};
use super::{render, success};
use crate::app::AppState;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use imsync_core::ErrorCode;
use imsync_service::ThreadFilter;
use serde_json::{json, Map, Value};

/// `count` as the list calls read it: 0 means everything.
fn limit(count: usize) -> i64 {
    if count == 0 {
        i64::MAX
    } else {
        count as i64
    }
}

fn listed(key: &str, items: Vec<Value>, offset: usize, total: i64) -> Response {
    let mut out = Map::new();
    out.insert("count".into(), json!(items.len()));
    out.insert(key.into(), Value::Array(items));
    out.insert("offset".into(), json!(offset));
    out.insert("total".into(), json!(total));
    success(Value::Object(out))
}

/// `GET /api/v1/users.list`: every account, oldest first.
pub async fn users_list(
    State(state): State<AppState>,
    RcAuth(_, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query(&uri, LIST_QUERY)?;
    let (count, offset) = paging(&q);
    let (users, total) = state
        .service
        .users_page(offset as i64, limit(count))
        .await?;
    let hub = state.service.hub();
    let docs = users
        .iter()
        .map(|u| {
            let mut d = user_doc(u);
            d["status"] = json!(if hub.presence(&u.id).0 {
                "online"
            } else {
                "offline"
            });
            d
        })
        .collect();
    Ok(listed("users", docs, offset, total))
}

/// `GET /api/v1/channels.list`: every public channel, joined or not, oldest first.
pub async fn channels_list(
    State(state): State<AppState>,
    RcAuth(_, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query(&uri, LIST_QUERY)?;
    let (count, offset) = paging(&q);
    let (rooms, total) = state
        .service
        .public_rooms(offset as i64, limit(count))
        .await?;
    let dc = default_channel(&state);
    let docs = rooms.iter().map(|r| render::public_room(r, dc)).collect();
    Ok(listed("channels", docs, offset, total))
}

/// `GET /api/v1/channels.counters?roomId= | roomName= [&userId=]`: the caller's counters of a
/// public channel; a channel they are not in answers `joined:false` and no unread figures.
pub async fn channels_counters(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query(
        &uri,
        &[
            opt("roomId", Ty::Str),
            opt("roomName", Ty::Str),
            opt("userId", Ty::Str),
        ],
    )?;
    if str_of(&q, "userId").is_some_and(|u| u != me.id) {
        // Another user's counters take Rocket.Chat's view-room-administration, which no
        // imsync account has.
        return Err(RcError::meteor("error-not-allowed", "Not allowed"));
    }
    let joined = match my_room(&state, &me, &q).await {
        Ok(r) => Some(r),
        Err(RcError::Meteor { ref code, .. }) if code == "error-room-not-found" => None,
        Err(e) => return Err(e),
    };
    let out = match joined {
        Some(r) if render::room_type(&r.conversation) == "c" => {
            let c = &r.conversation;
            let read_at = state.service.last_read_at(&me, &c.id).await?;
            json!({
                "joined": true,
                "members": r.member_count,
                "unreads": r.unread,
                "unreadsFrom": render::iso(read_at.unwrap_or(r.me.joined_at)),
                "msgs": c.live_msg_count,
                "latest": c.last_message_at.map(render::iso),
                "userMentions": 0,
            })
        }
        Some(_) => return Err(room_not_found()),
        None => {
            // Not in it: a public channel still answers, as Rocket.Chat's does.
            let reference = str_of(&q, "roomId")
                .or_else(|| str_of(&q, "roomName"))
                .unwrap_or_default();
            let conv = match state.service.find_room(reference).await {
                Ok(c) => c,
                Err(e) if e.code == ErrorCode::NotFound => return Err(room_not_found()),
                Err(e) => return Err(e.into()),
            };
            let room = match state.service.public_room(&conv.id).await {
                Ok(r) => r,
                Err(e) if e.code == ErrorCode::NotFound => return Err(room_not_found()),
                Err(e) => return Err(e.into()),
            };
            let c = &room.conversation;
            json!({
                "joined": false,
                "members": room.member_count,
                "unreads": null,
                "unreadsFrom": null,
                "msgs": c.live_msg_count,
                "latest": c.last_message_at.map(render::iso),
                "userMentions": 0,
            })
        }
    };
    Ok(success(out))
}

/// `POST /api/v1/subscriptions.unread`: `{roomId}` marks the room unread from its newest
/// message, `{firstUnreadMessage:{_id}}` from that message on.
pub async fn subscriptions_unread(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    RcBody(body): RcBody,
) -> RcResult<Response> {
    let b = check(
        &body,
        &[opt("roomId", Ty::Str), opt("firstUnreadMessage", Ty::Obj)],
        false,
    )
    .map_err(RcError::typed_body)?;
    let one_of = || RcError::typed_body("must match exactly one schema in oneOf");
    let from = match (b.get("roomId"), b.get("firstUnreadMessage")) {
        (Some(_), None) => {
            let r = my_room(&state, &me, &b).await?;
            let newest = state
                .service
                .history(&me, &r.conversation.id, None, None, 1)
                .await?
                .messages
                .pop()
                .ok_or_else(|| {
                    RcError::meteor(
                        "error-no-message-for-unread",
                        "There are no messages to mark unread",
                    )
                })?;
            newest.id
        }
        (None, Some(first)) => {
            let first = first.as_object().ok_or_else(one_of)?;
            let first = check(first, &[req("_id", Ty::Str)], false)
                .map_err(|m| RcError::typed_body(format!("/firstUnreadMessage {m}")))?;
            str_of(&first, "_id").unwrap_or_default().to_owned()
        }
        _ => return Err(one_of()),
    };
    state
        .service
        .mark_unread_from(&me, &from)
        .await
        .map_err(|e| match e.code {
            ErrorCode::NotFound | ErrorCode::NotParticipant => RcError::meteor_with(
                "error-action-not-allowed",
                "Not allowed",
                json!({ "method": "unreadMessages", "action": "Unread_messages" }),
            ),
            _ => e.into(),
        })?;
    Ok(success(json!({})))
}

/// `GET /api/v1/chat.getThreadsList?rid=[&type=all|following|unread][&text=]`: the room's
/// thread parents, latest reply first (or as `sort` asks on `tlm` or `ts`).
pub async fn get_threads_list(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query_object(uri.query())?;
    let q = check(
        &q,
        &dedup(
            [
                &[
                    req("rid", Ty::Str),
                    nullable("type", Ty::Enum(&["all", "following", "unread"])),
                    nullable("text", Ty::Str),
                ][..],
                LIST_QUERY,
            ]
            .concat(),
        ),
        true,
    )
    .map_err(RcError::typed_query)?;
    let sort = parse_sort(str_of(&q, "sort"))?;
    if !state.service.config().threads_enabled {
        return Err(threads_disabled());
    }
    let (count, offset) = paging(&q);
    let filter = match str_of(&q, "type") {
        Some("following") => ThreadFilter::Following,
        Some("unread") => ThreadFilter::Unread,
        _ => ThreadFilter::All,
    };
    let rid = str_of(&q, "rid").unwrap_or_default();
    let mut parents = state
        .service
        .thread_parents(&me, rid, filter)
        .await
        .map_err(|e| match e.code {
            ErrorCode::NotFound => RcError::meteor("error-not-allowed", "Not Allowed"),
            _ => thread_error(e),
        })?;
    if let Some(text) = str_of(&q, "text") {
        let needle = text.to_lowercase();
        parents.retain(|v| v.message.content.to_lowercase().contains(&needle));
    }
    match sort {
        Some((key, desc)) if key == "ts" => {
            parents.sort_by_key(|v| v.message.created_at);
            if desc {
                parents.reverse();
            }
        }
        Some((key, false)) if key == "tlm" => parents.reverse(),
        _ => {}
    }
    let (parents, total) = page(parents, count, offset);
    let docs = parents.iter().map(render::message).collect();
    Ok(listed("threads", docs, offset, total as i64))
}
