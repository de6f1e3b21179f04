use super::render::{ConversationDetail, ConversationRow, ConversationSummaryView};
use super::{created, ok, render, Envelope};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryParams, UnusedBody};
use axum::extract::{Path, State};
use axum::response::Response;
use imsync_core::Error;
use imsync_service::ConversationPatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateDirectBody {
    other_user_id: Option<String>,
    user_id: Option<String>,
    workspace_id: Option<String>,
    metadata: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroupBody {
    title: String,
    #[serde(default)]
    member_ids: Vec<String>,
    description: Option<String>,
    workspace_id: Option<String>,
    metadata: Option<Value>,
    #[serde(default)]
    public: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateBody {
    title: Option<String>,
    description: Option<String>,
    metadata: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
pub struct PinBody {
    pinned: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct MuteBody {
    muted: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddParticipantBody {
    user_id: String,
    role: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    with_unread: Option<String>,
    unread_only: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Left {
    conversation_id: String,
    left: bool,
}

/// `data` of a read: where the caller's read pointer is now.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadData {
    conversation_id: String,
    read_by: String,
    read_msg_seq: i64,
    #[schema(required = true)]
    last_read_message_id: Option<String>,
    read_at: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantRemoved {
    conversation_id: String,
    user_id: String,
    removed: bool,
}

fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1"))
}

#[utoipa::path(get, path = "/api/im/conversations", operation_id = "listConversations",
    params(("withUnread" = Option<bool>, Query,), ("unreadOnly" = Option<bool>, Query,)),
    responses((status = 200, description = "The caller's conversations", body = Envelope<Vec<ConversationSummaryView>>)))]
pub async fn list(
    State(state): State<AppState>,
    Auth(me): Auth,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Response> {
    let _ = flag(&q.with_unread);
    let unread_only = flag(&q.unread_only);
    let list = state.service.conversations(&me).await?;
    Ok(ok(list
        .iter()
        .filter(|s| !unread_only || s.unread_count > 0)
        .map(render::conversation_summary)
        .collect::<Vec<_>>()))
}

#[utoipa::path(get, path = "/api/im/conversations/{id}", operation_id = "getConversation", params(("id" = String, Path,)),
    responses((status = 200, description = "The conversation with its participants", body = Envelope<ConversationDetail>), (status = 403, description = "Not a participant"), (status = 404, description = "Unknown conversation")))]
pub async fn get(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let c = state.service.conversation(&me, &id).await?;
    Ok(ok(render::conversation_detail(&c)))
}

#[utoipa::path(patch, path = "/api/im/conversations/{id}", params(("id" = String, Path,)), request_body = UpdateBody,
    responses((status = 200, description = "Updated", body = Envelope<ConversationDetail>)))]
pub async fn update(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<UpdateBody>,
) -> ApiResult<Response> {
    let c = state
        .service
        .update_conversation(
            &me,
            &id,
            ConversationPatch {
                title: b.title,
                description: b.description,
                metadata: b.metadata,
            },
        )
        .await?;
    Ok(ok(render::conversation_detail(&c)))
}

#[utoipa::path(delete, path = "/api/im/conversations/{id}", params(("id" = String, Path,)),
    responses((status = 200, description = "The caller left the conversation", body = Envelope<Left>)))]
pub async fn leave(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    state.service.leave(&me, &id).await?;
    Ok(ok(Left {
        conversation_id: id,
        left: true,
    }))
}

#[utoipa::path(post, path = "/api/im/conversations/direct", request_body = CreateDirectBody,
    responses((status = 201, description = "Created", body = Envelope<ConversationDetail>),
        (status = 200, description = "Already existed", body = Envelope<ConversationDetail>)))]
pub async fn create_direct(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<CreateDirectBody>,
) -> ApiResult<Response> {
    let _ = b.workspace_id;
    let other = b
        .other_user_id
        .or(b.user_id)
        .ok_or_else(|| Error::invalid("otherUserId is required"))?;
    let (c, was_created) = state.service.open_direct(&me, &other, b.metadata).await?;
    let body = render::conversation_detail(&c);
    Ok(if was_created { created(body) } else { ok(body) })
}

#[utoipa::path(post, path = "/api/im/conversations/group", request_body = CreateGroupBody,
    responses((status = 201, description = "Created", body = Envelope<ConversationDetail>)))]
pub async fn create_group(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<CreateGroupBody>,
) -> ApiResult<Response> {
    let _ = b.workspace_id;
    let c = state
        .service
        .create_group(
            &me,
            b.title,
            b.description,
            b.metadata,
            b.member_ids,
            b.public,
        )
        .await?;
    Ok(created(render::conversation_detail(&c)))
}

#[utoipa::path(post, path = "/api/im/conversations/{id}/read", params(("id" = String, Path,)),
    responses((status = 200, description = "Read pointer moved to the newest message", body = Envelope<ReadData>)))]
pub async fn read(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    let (seq, last, at) = state.service.mark_read(&me, &id).await?;
    Ok(ok(ReadData {
        conversation_id: id,
        read_by: me.id,
        read_msg_seq: seq,
        last_read_message_id: last,
        read_at: imsync_core::time::rfc3339(at),
    }))
}

#[utoipa::path(post, path = "/api/im/conversations/{id}/archive", params(("id" = String, Path,)),
    responses((status = 200, description = "Archived", body = Envelope<ConversationRow>)))]
pub async fn archive(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    let (c, p) = state.service.set_archived(&me, &id, true).await?;
    Ok(ok(render::conversation_row(&c, &p)))
}

#[utoipa::path(post, path = "/api/im/conversations/{id}/unarchive", params(("id" = String, Path,)),
    responses((status = 200, description = "Unarchived", body = Envelope<ConversationRow>)))]
pub async fn unarchive(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    let (c, p) = state.service.set_archived(&me, &id, false).await?;
    Ok(ok(render::conversation_row(&c, &p)))
}

#[utoipa::path(patch, path = "/api/im/conversations/{id}/pin", params(("id" = String, Path,)), request_body = PinBody,
    responses((status = 200, description = "Pinned or unpinned for the caller", body = Envelope<Settings>)))]
pub async fn pin(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<PinBody>,
) -> ApiResult<Response> {
    let p = state
        .service
        .set_settings(&me, &id, Some(b.pinned), None)
        .await?;
    Ok(ok(settings_json(&id, &p)))
}

#[utoipa::path(patch, path = "/api/im/conversations/{id}/mute", params(("id" = String, Path,)), request_body = MuteBody,
    responses((status = 200, description = "Muted or unmuted for the caller", body = Envelope<Settings>)))]
pub async fn mute(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<MuteBody>,
) -> ApiResult<Response> {
    let p = state
        .service
        .set_settings(&me, &id, None, Some(b.muted))
        .await?;
    Ok(ok(settings_json(&id, &p)))
}

/// `data` of a pin or mute: the caller's settings in the conversation.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    conversation_id: String,
    pinned: bool,
    muted: bool,
    #[schema(required = true)]
    pinned_at: Option<String>,
}

fn settings_json(id: &str, p: &imsync_core::model::Participant) -> Settings {
    Settings {
        conversation_id: id.to_owned(),
        pinned: p.pinned,
        muted: p.muted,
        pinned_at: p.pinned_at.map(imsync_core::time::rfc3339),
    }
}

#[utoipa::path(post, path = "/api/im/conversations/{id}/participants", params(("id" = String, Path,)), request_body = AddParticipantBody,
    responses((status = 201, description = "Added", body = Envelope<ConversationDetail>), (status = 409, description = "Already a participant")))]
pub async fn add_participant(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<AddParticipantBody>,
) -> ApiResult<Response> {
    let c = state
        .service
        .add_participant(&me, &id, &b.user_id, b.role.as_deref())
        .await?;
    Ok(created(render::conversation_detail(&c)))
}

#[utoipa::path(delete, path = "/api/im/conversations/{id}/participants/{userId}",
    params(("id" = String, Path,), ("userId" = String, Path,)),
    responses((status = 200, description = "Removed", body = Envelope<ParticipantRemoved>)))]
pub async fn remove_participant(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path((id, user_id)): Path<(String, String)>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    state.service.remove_participant(&me, &id, &user_id).await?;
    Ok(ok(ParticipantRemoved {
        conversation_id: id,
        user_id,
        removed: true,
    }))
}
