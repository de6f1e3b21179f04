//! `/api/im/contacts/*` besides the contact list: friend requests, friends and blocks, with the
//! paths and bodies the Prismer SDK's `ContactsClient` sends.

use super::render::{user_summary, UserSummary};
use super::{created, ok, Envelope};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UnusedBody};
use axum::extract::{Path, State};
use axum::response::Response;
use imsync_core::model::User;
use imsync_core::time::rfc3339;
use imsync_service::{FriendView, RequestOutcome, RequestView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FriendRequestBody {
    /// The user asked, by id or username.
    user_id: String,
    reason: Option<String>,
    source: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct RemarkBody {
    /// The caller's private name for the friend; blank or null clears it.
    remark: Option<String>,
}

/// A user as the contact responses name them.
#[derive(Serialize, ToSchema)]
pub struct ContactUser {
    id: String,
    #[serde(flatten)]
    summary: UserSummary,
}

fn contact_user(u: &User) -> ContactUser {
    ContactUser {
        id: u.id.clone(),
        summary: user_summary(u),
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FriendRequestView {
    id: String,
    from_user_id: String,
    to_user_id: String,
    #[schema(required = true)]
    reason: Option<String>,
    #[schema(required = true)]
    source: Option<String>,
    /// `pending`, `accepted`, `rejected` (by the recipient) or `cancelled` (by the sender).
    status: &'static str,
    from_user: ContactUser,
    to_user: ContactUser,
    created_at: String,
    updated_at: String,
}

fn request_view(v: &RequestView) -> FriendRequestView {
    let r = &v.request;
    FriendRequestView {
        id: r.id.clone(),
        from_user_id: r.from_user.clone(),
        to_user_id: r.to_user.clone(),
        reason: r.reason.clone(),
        source: r.source.clone(),
        status: r.status.as_str(),
        from_user: contact_user(&v.from),
        to_user: contact_user(&v.to),
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Friend {
    user_id: String,
    #[serde(flatten)]
    summary: UserSummary,
    /// The caller's private name for this friend.
    #[schema(required = true)]
    remark: Option<String>,
    /// When the two became friends.
    created_at: String,
}

fn friend(f: &FriendView) -> Friend {
    Friend {
        user_id: f.user.id.clone(),
        summary: user_summary(&f.user),
        remark: f.remark.clone(),
        created_at: rfc3339(f.since),
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockedUser {
    user_id: String,
    username: String,
    display_name: String,
    role: &'static str,
    blocked_at: String,
}

fn blocked_user(u: &User, at: i64) -> BlockedUser {
    BlockedUser {
        user_id: u.id.clone(),
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        role: u.role.as_str(),
        blocked_at: rfc3339(at),
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    user_id: String,
    removed: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Unblocked {
    user_id: String,
    /// Always false.
    blocked: bool,
}

#[utoipa::path(post, path = "/api/im/contacts/request", operation_id = "requestFriend", request_body = FriendRequestBody,
    responses((status = 201, description = "Request sent (or the one already pending)", body = Envelope<FriendRequestView>),
        (status = 200, description = "The other user had asked first: now friends", body = Envelope<FriendRequestView>)))]
pub async fn request(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<FriendRequestBody>,
) -> ApiResult<Response> {
    Ok(
        match state
            .service
            .request_friend(&me, &b.user_id, b.reason, b.source)
            .await?
        {
            RequestOutcome::Pending(v) => created(request_view(&v)),
            RequestOutcome::Accepted(v) => ok(request_view(&v)),
        },
    )
}

#[utoipa::path(get, path = "/api/im/contacts/requests/received", operation_id = "receivedFriendRequests",
    responses((status = 200, description = "Pending requests to the caller, newest first", body = Envelope<Vec<FriendRequestView>>)))]
pub async fn received(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<Response> {
    let list = state.service.friend_requests(&me, true).await?;
    Ok(ok(list.iter().map(request_view).collect::<Vec<_>>()))
}

#[utoipa::path(get, path = "/api/im/contacts/requests/sent", operation_id = "sentFriendRequests",
    responses((status = 200, description = "Pending requests from the caller, newest first", body = Envelope<Vec<FriendRequestView>>)))]
pub async fn sent(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<Response> {
    let list = state.service.friend_requests(&me, false).await?;
    Ok(ok(list.iter().map(request_view).collect::<Vec<_>>()))
}

#[utoipa::path(post, path = "/api/im/contacts/requests/{id}/accept", operation_id = "acceptFriendRequest", params(("id" = String, Path,)),
    responses((status = 200, description = "Accepted: the two are friends", body = Envelope<FriendRequestView>)))]
pub async fn accept(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    let v = state.service.answer_friend_request(&me, &id, true).await?;
    Ok(ok(request_view(&v)))
}

#[utoipa::path(post, path = "/api/im/contacts/requests/{id}/reject", operation_id = "rejectFriendRequest", params(("id" = String, Path,)),
    responses((status = 200, description = "Rejected by the recipient, or cancelled by the sender", body = Envelope<FriendRequestView>)))]
pub async fn reject(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    let v = state.service.answer_friend_request(&me, &id, false).await?;
    Ok(ok(request_view(&v)))
}

#[utoipa::path(get, path = "/api/im/contacts/friends", operation_id = "listFriends",
    responses((status = 200, description = "The caller's friends", body = Envelope<Vec<Friend>>)))]
pub async fn friends(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<Response> {
    let list = state.service.friends(&me).await?;
    Ok(ok(list.iter().map(friend).collect::<Vec<_>>()))
}

#[utoipa::path(delete, path = "/api/im/contacts/{userId}/remove", operation_id = "removeFriend", params(("userId" = String, Path,)),
    responses((status = 200, description = "No longer friends, on both sides", body = Envelope<Removed>)))]
pub async fn remove(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Response> {
    state.service.unfriend(&me, &user_id).await?;
    Ok(ok(Removed {
        user_id,
        removed: true,
    }))
}

#[utoipa::path(patch, path = "/api/im/contacts/{userId}/remark", operation_id = "setFriendRemark", params(("userId" = String, Path,)), request_body = RemarkBody,
    responses((status = 200, description = "The friend with the new remark", body = Envelope<Friend>)))]
pub async fn remark(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(user_id): Path<String>,
    JsonBody(b): JsonBody<RemarkBody>,
) -> ApiResult<Response> {
    let f = state.service.set_remark(&me, &user_id, b.remark).await?;
    Ok(ok(friend(&f)))
}

#[utoipa::path(post, path = "/api/im/contacts/{userId}/block", operation_id = "blockUser", params(("userId" = String, Path,)),
    responses((status = 200, description = "Blocked (again harmlessly)", body = Envelope<BlockedUser>)))]
pub async fn block(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(user_id): Path<String>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    let (u, at) = state.service.block(&me, &user_id).await?;
    Ok(ok(blocked_user(&u, at)))
}

#[utoipa::path(delete, path = "/api/im/contacts/{userId}/block", operation_id = "unblockUser", params(("userId" = String, Path,)),
    responses((status = 200, description = "Unblocked", body = Envelope<Unblocked>)))]
pub async fn unblock(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Response> {
    let u = state.service.unblock(&me, &user_id).await?;
    Ok(ok(Unblocked {
        user_id: u.id,
        blocked: false,
    }))
}

#[utoipa::path(get, path = "/api/im/contacts/blocked", operation_id = "listBlocked",
    responses((status = 200, description = "The users the caller blocked, oldest first", body = Envelope<Vec<BlockedUser>>)))]
pub async fn blocked(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<Response> {
    let list = state.service.blocked(&me).await?;
    Ok(ok(list
        .iter()
        .map(|(u, at)| blocked_user(u, *at))
        .collect::<Vec<_>>()))
}
