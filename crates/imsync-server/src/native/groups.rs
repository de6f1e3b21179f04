use super::render::GroupView;
use super::{created, ok, render, Envelope};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UnusedBody};
use axum::extract::{Path, State};
use axum::response::Response;
use imsync_core::model::ConversationKind;
use imsync_core::Error;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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

#[utoipa::path(post, path = "/api/im/groups", operation_id = "createGroup", request_body = CreateBody,
    responses((status = 201, description = "Created", body = Envelope<GroupView>)))]
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

/// A group in the caller's list.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupItem {
    group_id: String,
    #[schema(required = true)]
    title: Option<String>,
    #[schema(required = true)]
    description: Option<String>,
    my_role: &'static str,
    member_count: i64,
    unread_count: i64,
}

#[utoipa::path(get, path = "/api/im/groups", operation_id = "listGroups",
    responses((status = 200, description = "The caller's groups", body = Envelope<Vec<GroupItem>>)))]
pub async fn list(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<Response> {
    let list = state.service.conversations(&me).await?;
    Ok(ok(list
        .iter()
        .filter(|s| s.conversation.kind == ConversationKind::Group)
        .map(|s| GroupItem {
            group_id: s.conversation.id.clone(),
            title: s.conversation.title.clone(),
            description: s.conversation.description.clone(),
            my_role: s.me.role.as_str(),
            member_count: s.member_count,
            unread_count: s.unread_count,
        })
        .collect::<Vec<_>>()))
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

#[utoipa::path(get, path = "/api/im/groups/{id}", operation_id = "getGroup", params(("id" = String, Path,)),
    responses((status = 200, description = "The group", body = Envelope<GroupView>)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(render::group(&group_of(&state, &me, &id).await?)))
}

#[utoipa::path(post, path = "/api/im/groups/{id}/members", params(("id" = String, Path,)), request_body = AddMemberBody,
    responses((status = 201, description = "Added", body = Envelope<GroupView>)))]
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

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberRemoved {
    group_id: String,
    user_id: String,
    removed: bool,
}

#[utoipa::path(delete, path = "/api/im/groups/{id}/members/{userId}", params(("id" = String, Path,), ("userId" = String, Path,)),
    responses((status = 200, description = "Removed", body = Envelope<MemberRemoved>)))]
pub async fn remove_member(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path((id, user_id)): Path<(String, String)>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    state.service.remove_participant(&me, &id, &user_id).await?;
    Ok(ok(MemberRemoved {
        group_id: id,
        user_id,
        removed: true,
    }))
}
