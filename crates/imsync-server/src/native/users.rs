use super::{ok, ok_meta, render};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiResult;
use crate::extract::{int_param, JsonBody, QueryParams};
use axum::extract::{Path, State};
use axum::response::Response;
use imsync_core::model::ConversationKind;
use imsync_core::time::rfc3339;
use imsync_core::Error;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

#[derive(Deserialize)]
pub struct ContactsQuery {
    role: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceBody {
    user_ids: Vec<String>,
}

#[utoipa::path(get, path = "/api/im/contacts", params(("role" = Option<String>, Query,), ("limit" = Option<i64>, Query,), ("offset" = Option<i64>, Query,)),
    responses((status = 200, description = "The users the caller has direct conversations with")))]
pub async fn contacts(
    State(state): State<AppState>,
    Auth(me): Auth,
    QueryParams(q): QueryParams<ContactsQuery>,
) -> ApiResult<Response> {
    let limit = int_param("limit", q.limit.as_deref())?.unwrap_or(50);
    let offset = int_param("offset", q.offset.as_deref())?.unwrap_or(0);
    if limit < 1 || offset < 0 {
        return Err(Error::param("limit must be positive and offset not negative").into());
    }
    let list = state.service.conversations(&me).await?;
    let contacts: Vec<_> = list
        .iter()
        .filter(|s| s.conversation.kind == ConversationKind::Direct)
        .filter_map(|s| s.peer.as_ref().map(|p| (s, p)))
        .filter(|(_, p)| q.role.as_deref().is_none_or(|r| r == p.role.as_str()))
        .collect();
    let total = contacts.len();
    let data: Vec<_> = contacts
        .into_iter()
        .skip(offset as usize)
        .take(limit.min(200) as usize)
        .map(|(s, p)| {
            json!({
                "userId": p.id,
                "username": p.username,
                "displayName": p.display_name,
                "role": p.role.as_str(),
                "agentType": p.agent_type,
                "avatarUrl": p.avatar_url,
                "lastMessageAt": s.conversation.last_message_at.map(rfc3339),
                "lastMessage": s.last_message.as_ref().map(render::message),
                "unreadCount": s.unread_count,
                "conversationId": s.conversation.id,
                "conversationType": "direct",
            })
        })
        .collect();
    Ok(ok_meta(json!(data), json!({ "total": total })))
}

#[utoipa::path(get, path = "/api/im/users/{id}", params(("id" = String, Path,)), responses((status = 200, description = "A user's profile"), (status = 404, description = "Unknown user")))]
pub async fn profile(
    State(state): State<AppState>,
    _auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(render::user(&state.service.user(&id).await?)))
}

#[utoipa::path(get, path = "/api/im/users/by-username/{username}", params(("username" = String, Path,)),
    responses((status = 200, description = "A user's profile"), (status = 404, description = "Unknown user")))]
pub async fn by_username(
    State(state): State<AppState>,
    _auth: Auth,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(render::user(
        &state.service.user_by_username(&username).await?,
    )))
}

#[utoipa::path(post, path = "/api/im/presence/batch", request_body = PresenceBody,
    responses((status = 200, description = "Presence of each user")))]
pub async fn presence(
    State(state): State<AppState>,
    _auth: Auth,
    JsonBody(b): JsonBody<PresenceBody>,
) -> ApiResult<Response> {
    if b.user_ids.len() > 100 {
        return Err(Error::invalid("at most 100 userIds").into());
    }
    // Online while the user has a realtime connection.
    Ok(ok(b
        .user_ids
        .iter()
        .map(|id| {
            let (online, last_seen) = state.service.hub().presence(id);
            json!({
                "userId": id,
                "status": if online { "online" } else { "offline" },
                "online": online,
                "lastSeen": last_seen.map(rfc3339),
            })
        })
        .collect()))
}
