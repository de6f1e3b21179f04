use super::messages::{history_response, send_response, HistoryQuery, SendBody};
use super::{created, ok, render};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryParams, UnusedBody};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use imsync_core::model::ConversationKind;
use imsync_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
pub struct CreateBody {
    title: String,
    #[serde(default)]
    members: Vec<String>,
    description: Option<String>,
    metadata: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddMemberBody {
    user_id: String,
    role: Option<String>,
}

#[utoipa::path(post, path = "/api/im/groups", request_body = CreateBody, responses((status = 201, description = "Created")))]
pub async fn create(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult<Response> {
    let c = state
        .service
        .create_group(&me, b.title, b.description, b.metadata, b.members, false)
        .await?;
    Ok(created(render::group(&c)))
}

#[utoipa::path(get, path = "/api/im/groups", responses((status = 200, description = "The caller's groups")))]
pub async fn list(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<Response> {
    let list = state.service.conversations(&me).await?;
    Ok(ok(list
        .iter()
        .filter(|s| s.conversation.kind == ConversationKind::Group)
        .map(|s| {
            json!({
                "groupId": s.conversation.id,
                "title": s.conversation.title,
                "description": s.conversation.description,
                "myRole": s.me.role.as_str(),
                "memberCount": s.member_count,
                "unreadCount": s.unread_count,
            })
        })
        .collect()))
}

async fn group_of(
    state: &AppState,
    me: &imsync_core::model::User,
    id: &str,
) -> ApiResult<imsync_service::ConversationWithMembers> {
    let c = state.service.conversation(me, id).await?;
    if c.conversation.kind != ConversationKind::Group {
        return Err(Error::not_found("Group").into());
    }
    Ok(c)
}

#[utoipa::path(get, path = "/api/im/groups/{id}", params(("id" = String, Path,)), responses((status = 200, description = "The group")))]
pub async fn get(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(render::group(&group_of(&state, &me, &id).await?)))
}

#[utoipa::path(post, path = "/api/im/groups/{id}/messages", params(("id" = String, Path,),
    ("X-Idempotency-Key" = Option<String>, Header,)), request_body = SendBody, responses((status = 201, description = "Sent")))]
pub async fn send(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(b): JsonBody<SendBody>,
) -> ApiResult<Response> {
    let new = b.into_new(&headers)?;
    let outcome = state.service.send(&me, &id, new).await?;
    Ok(send_response(&outcome))
}

#[utoipa::path(get, path = "/api/im/groups/{id}/messages", params(("id" = String, Path,),
    ("limit" = Option<i64>, Query,), ("before" = Option<String>, Query,), ("after" = Option<String>, Query,)),
    responses((status = 200, description = "Messages, oldest first")))]
pub async fn history(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> ApiResult<Response> {
    let limit = q.limit()?;
    let (before, after) = q.cursors();
    let page = state
        .service
        .history(&me, &id, before, after, limit)
        .await?;
    Ok(history_response(&page, limit))
}

#[utoipa::path(post, path = "/api/im/groups/{id}/members", params(("id" = String, Path,)), request_body = AddMemberBody,
    responses((status = 201, description = "Added")))]
pub async fn add_member(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<AddMemberBody>,
) -> ApiResult<Response> {
    let c = state
        .service
        .add_participant(&me, &id, &b.user_id, b.role.as_deref())
        .await?;
    Ok(created(render::group(&c)))
}

#[utoipa::path(delete, path = "/api/im/groups/{id}/members/{userId}", params(("id" = String, Path,), ("userId" = String, Path,)),
    responses((status = 200, description = "Removed")))]
pub async fn remove_member(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path((id, user_id)): Path<(String, String)>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    state.service.remove_participant(&me, &id, &user_id).await?;
    Ok(ok(
        json!({ "groupId": id, "userId": user_id, "removed": true }),
    ))
}
