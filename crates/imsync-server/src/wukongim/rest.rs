//! The REST calls a TangSengDaoDao app makes around the WuKongIM socket, in that face's shapes
//! and error format: where the socket is, reminders, channel info, users, friends, groups and
//! the app configuration (docs/wukongim.md, "REST around the socket").

use crate::app::AppState;
use crate::extract::UnusedBody;
use crate::tsdd::error::{bad, TsddAuth, TsddError, TsddResult};
use crate::tsdd::render;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use imsync_core::model::{ConversationKind, User};
use imsync_core::ErrorCode;
use imsync_service::{ConversationSummary, GroupInfo};
use serde_json::{json, Value};

/// The path of the socket, under the HTTP listener.
pub const SOCKET_PATH: &str = "/v1/wukongim/ws";

/// The host the client reached us by, if it is a plain host name or address with a port.
fn host(headers: &HeaderMap) -> Option<&str> {
    let h = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get("host"))?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim();
    let plain = !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    plain.then_some(h)
}

/// `GET /v1/users/{uid}/im`: the socket's addresses, as the client reached this server. The
/// TCP address is the host the client used with the TCP listener's port (the one it is bound
/// to, if it names one address rather than all of them, is used only when no host was sent).
pub async fn im_addr(
    State(state): State<AppState>,
    TsddAuth(_me): TsddAuth,
    Path(_uid): Path<String>,
    headers: HeaderMap,
) -> TsddResult<Response> {
    let given = host(&headers);
    let host = given.unwrap_or("127.0.0.1:8080");
    let tcp_addr =
        state
            .config
            .wukongim_tcp_addr
            .map_or(String::new(), |a| match given.map(host_name) {
                Some(name) if !name.is_empty() => format!("{name}:{}", a.port()),
                _ if !a.ip().is_unspecified() => a.to_string(),
                _ => format!("127.0.0.1:{}", a.port()),
            });
    Ok(Json(json!({
        "ws_addr": format!("ws://{host}{SOCKET_PATH}"),
        "wss_addr": format!("wss://{host}{SOCKET_PATH}"),
        "tcp_addr": tcp_addr,
    }))
    .into_response())
}

/// A `Host` value without its port: `example.com:80` → `example.com`, `[::1]:80` → `[::1]`.
fn host_name(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `POST /v1/message/reminder/sync`: imsync keeps no reminders.
pub async fn reminder_sync(
    TsddAuth(_me): TsddAuth,
    _body: UnusedBody<TsddError>,
) -> TsddResult<Response> {
    Ok(Json(json!([])).into_response())
}

async fn summaries(state: &AppState, me: &User) -> TsddResult<Vec<ConversationSummary>> {
    Ok(state.service.conversations(me).await?)
}

/// The caller's (mute, top) of the person channel with `uid`.
fn person_settings(list: &[ConversationSummary], uid: &str) -> (bool, bool) {
    list.iter()
        .find(|s| s.peer.as_ref().is_some_and(|p| p.id == uid))
        .map_or((false, false), |s| (s.me.muted, s.me.pinned))
}

async fn user_by_uid(state: &AppState, uid: &str) -> TsddResult<User> {
    match state.service.user(uid).await {
        Ok(u) => Ok(u),
        Err(e) if e.code == ErrorCode::NotFound => Err(bad("用户不存在！")),
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/users/{uid}`.
pub async fn user(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    Path(uid): Path<String>,
) -> TsddResult<Response> {
    let u = user_by_uid(&state, &uid).await?;
    let (mute, top) = person_settings(&summaries(&state, &me).await?, &uid);
    Ok(Json(render::user(&u, mute, top)).into_response())
}

/// `GET /v1/channels/{id}/{type}`: what the SDK's channel-info callback shows.
pub async fn channel_info(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    Path((id, channel_type)): Path<(String, String)>,
) -> TsddResult<Response> {
    let mut info = json!({
        "channel": { "channel_id": id, "channel_type": 0 },
        "parent_channel": null,
        "name": "",
        "logo": "",
        "remark": "",
        "status": 1,
        "online": 0,
        "last_offline": 0,
        "receipt": 0,
        "robot": 0,
        "category": "",
        "stick": 0,
        "mute": 0,
        "show_nick": 0,
        "follow": 0,
        "be_deleted": 0,
        "be_blacklist": 0,
        "notice": "",
        "save": 0,
        "forbidden": 0,
        "invite": 0,
        "flame": 0,
        "flame_second": 0,
        "device_flag": 0,
        "extra": {},
    });
    match channel_type.trim() {
        "1" => {
            let u = user_by_uid(&state, &id).await?;
            let (mute, top) = person_settings(&summaries(&state, &me).await?, &id);
            let online = state.service.hub().presence(&u.id).0;
            info["channel"]["channel_type"] = json!(1);
            info["name"] = json!(u.display_name);
            info["logo"] = json!(u.avatar_url.clone().unwrap_or_default());
            info["robot"] = json!(i64::from(u.role == imsync_core::model::UserRole::Agent));
            info["online"] = json!(i64::from(online));
            info["mute"] = json!(i64::from(mute));
            info["stick"] = json!(i64::from(top));
            info["follow"] = json!(1);
            info["extra"] = json!({ "username": u.username, "short_no": u.username });
        }
        "2" => {
            let c = state.service.conversation(&me, &id).await?;
            if c.conversation.kind != ConversationKind::Group {
                return Err(bad("channel_type does not match the channel"));
            }
            info["channel"]["channel_type"] = json!(2);
            info["name"] = json!(c.conversation.title.clone().unwrap_or_default());
            info["notice"] = json!(c.conversation.description.clone().unwrap_or_default());
            info["mute"] = json!(i64::from(c.me.muted));
            info["stick"] = json!(i64::from(c.me.pinned));
            info["show_nick"] = json!(1);
            info["forbidden"] = json!(0);
            info["extra"] = json!({ "member_count": c.members.len() });
        }
        "" | "0" => return Err(bad("channel_type不能为空！")),
        other => return Err(bad(format!("unsupported channel_type {other}"))),
    }
    Ok(Json(info).into_response())
}

/// `POST /v1/friend/sync`: imsync has no friend requests; a user's friends are the peers of
/// their person channels.
pub async fn friend_sync(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    _body: UnusedBody<TsddError>,
) -> TsddResult<Response> {
    let list = summaries(&state, &me).await?;
    let friends: Vec<Value> = list
        .iter()
        .filter_map(|s| {
            let p = s.peer.as_ref()?;
            let mut v = render::user(p, s.me.muted, s.me.pinned);
            v["id"] = json!(s.conversation.last_event_seq);
            v["version"] = json!(s.conversation.created_at);
            v["is_deleted"] = json!(0);
            v["vercode"] = json!("");
            v["source_vercode"] = json!("");
            Some(v)
        })
        .collect();
    Ok(Json(friends).into_response())
}

/// `GET /v1/group/my`: the groups the caller is in.
pub async fn my_groups(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
) -> TsddResult<Response> {
    let list = summaries(&state, &me).await?;
    let groups: Vec<Value> = list
        .into_iter()
        .filter(|s| s.conversation.kind == ConversationKind::Group)
        .map(|s| {
            render::group(&GroupInfo {
                conversation: s.conversation,
                me: s.me,
                member_count: s.member_count,
            })
        })
        .collect();
    Ok(Json(groups).into_response())
}

/// `GET /v1/common/appconfig`: what the app may do against this server.
pub async fn app_config() -> Response {
    Json(json!({
        "version": 1,
        "super_token": "",
        "super_token_on": 0,
        "revoke_second": 0,
        "welcome_message": "",
        "new_user_join_system_group": 0,
        "search_by_phone": 0,
        "register_invite_on": 0,
        "send_welcome_message_on": 0,
        "invite_system_account_join_group_on": 0,
        "register_user_must_complete_info_on": 0,
        "channel_pinned_message_max_count": 0,
        "can_modify_api_url": 0,
        "phone_search_off": 1,
        "shortno_edit_off": 1,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("example.com:8080"), "example.com");
        assert_eq!(host_name("example.com"), "example.com");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("10.0.0.1:80"), "10.0.0.1");
    }
}
