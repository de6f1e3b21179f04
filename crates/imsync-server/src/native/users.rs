use super::render::{MessageView, UserSummary, UserView};
use super::{ok, ok_meta, render, Envelope, PagedEnvelope};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiResult;
use crate::extract::{int_param, JsonBody, QueryParams};
use axum::extract::{Path, State};
use axum::response::Response;
use imsync_core::model::ConversationKind;
use imsync_core::time::rfc3339;
use imsync_core::Error;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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

/// A user the caller has a direct conversation with.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    user_id: String,
    #[serde(flatten)]
    summary: UserSummary,
    #[schema(required = true)]
    last_message_at: Option<String>,
    #[schema(value_type = Option<MessageView>, required = true)]
    last_message: Option<Value>,
    unread_count: i64,
    conversation_id: String,
    /// Always `direct`.
    conversation_type: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Total {
    total: usize,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    user_id: String,
    /// `online` or `offline`.
    status: &'static str,
    online: bool,
    #[schema(required = true)]
    last_seen: Option<String>,
}

#[utoipa::path(get, path = "/api/im/contacts", params(("role" = Option<String>, Query,), ("limit" = Option<i64>, Query,), ("offset" = Option<i64>, Query,)),
    responses((status = 200, description = "The users the caller has direct conversations with", body = PagedEnvelope<Vec<Contact>, Total>)))]
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
        .map(|(s, p)| Contact {
            user_id: p.id.clone(),
            summary: render::user_summary(p),
            last_message_at: s.conversation.last_message_at.map(rfc3339),
            last_message: s.last_message.as_ref().map(render::message),
            unread_count: s.unread_count,
            conversation_id: s.conversation.id.clone(),
            conversation_type: "direct",
        })
        .collect();
    Ok(ok_meta(data, Total { total }))
}

#[utoipa::path(get, path = "/api/im/users/{id}", params(("id" = String, Path,)), responses((status = 200, description = "A user's profile", body = Envelope<UserView>), (status = 404, description = "Unknown user")))]
pub async fn profile(
    State(state): State<AppState>,
    _auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(render::user(&state.service.user(&id).await?)))
}

#[utoipa::path(get, path = "/api/im/users/by-username/{username}", params(("username" = String, Path,)),
    responses((status = 200, description = "A user's profile", body = Envelope<UserView>), (status = 404, description = "Unknown user")))]
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
    responses((status = 200, description = "Presence of each user", body = Envelope<Vec<Presence>>)))]
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
            Presence {
                user_id: id.clone(),
                status: if online { "online" } else { "offline" },
                online,
                last_seen: last_seen.map(rfc3339),
            }
        })
        .collect::<Vec<_>>()))
}
