//! The native face: Prismer Cloud's IM API under `/api/im` (docs/native.md). Every response is
//! `{ok:true, data, meta?}` or the error envelope of [`crate::error`].

mod accounts;
mod admin;
mod contacts;
mod conversations;
pub mod files;
mod groups;
mod messages;
mod render;
mod sync;
mod users;

pub use messages::socket_send;
pub use sync::event_json;

use crate::app::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "imsync native API",
        description = "Prismer-compatible IM API with cursor sync and idempotent sends"
    ),
    components(schemas(
        accounts::RegisterBody,
        accounts::PasswordRegisterBody,
        accounts::LoginBody,
        accounts::ProfileBody,
        conversations::CreateDirectBody,
        conversations::CreateGroupBody,
        conversations::UpdateBody,
        conversations::PinBody,
        conversations::MuteBody,
        conversations::AddParticipantBody,
        groups::CreateBody,
        groups::AddMemberBody,
        messages::SendBody,
        messages::EditBody,
        messages::ReactBody,
        messages::DeliveredBody,
        users::PresenceBody,
        contacts::FriendRequestBody,
        contacts::RemarkBody,
        admin::CreateUserBody,
        admin::UpdateUserBody,
        admin::ResetPasswordBody,
    )),
    tags((name = "im", description = "The native IM API"))
)]
struct ApiDoc;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::password_register))
        .routes(routes!(accounts::login))
        .routes(routes!(
            accounts::me,
            accounts::update_me,
            accounts::delete_me
        ))
        .routes(routes!(accounts::refresh))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::health))
        .routes(routes!(messages::direct_send, messages::direct_history))
        .routes(routes!(groups::create, groups::list))
        .routes(routes!(groups::get))
        .routes(routes!(messages::group_send, messages::group_history))
        .routes(routes!(groups::add_member))
        .routes(routes!(groups::remove_member))
        .routes(routes!(conversations::list))
        .routes(routes!(
            conversations::get,
            conversations::update,
            conversations::leave
        ))
        .routes(routes!(conversations::create_direct))
        .routes(routes!(conversations::create_group))
        .routes(routes!(conversations::read))
        .routes(routes!(conversations::archive))
        .routes(routes!(conversations::unarchive))
        .routes(routes!(conversations::pin))
        .routes(routes!(conversations::mute))
        .routes(routes!(conversations::add_participant))
        .routes(routes!(conversations::remove_participant))
        .routes(routes!(messages::send, messages::history))
        .routes(routes!(messages::edit, messages::delete))
        .routes(routes!(messages::react))
        .routes(routes!(messages::delivered))
        .routes(routes!(users::contacts))
        .routes(routes!(contacts::request))
        .routes(routes!(contacts::received))
        .routes(routes!(contacts::sent))
        .routes(routes!(contacts::accept))
        .routes(routes!(contacts::reject))
        .routes(routes!(contacts::friends))
        .routes(routes!(contacts::remove))
        .routes(routes!(contacts::remark))
        .routes(routes!(contacts::block, contacts::unblock))
        .routes(routes!(contacts::blocked))
        .routes(routes!(users::profile))
        .routes(routes!(users::by_username))
        .routes(routes!(users::presence))
        .routes(routes!(sync::sync))
        .routes(routes!(admin::list, admin::create))
        .routes(routes!(admin::get, admin::update))
        .routes(routes!(admin::reset_password))
        .routes(routes!(admin::logout))
}

/// The success envelope of every native response: `{ok:true, data}`.
#[derive(Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Always true; failures answer the error envelope instead.
    ok: bool,
    data: T,
}

/// The success envelope of the paged responses: `{ok:true, data, meta}`.
#[derive(Serialize, ToSchema)]
pub struct PagedEnvelope<T, M> {
    /// Always true; failures answer the error envelope instead.
    ok: bool,
    data: T,
    meta: M,
}

/// 200 `{ok:true, data}`.
pub fn ok<T: Serialize>(data: T) -> Response {
    Json(Envelope { ok: true, data }).into_response()
}

/// 201 `{ok:true, data}`.
pub fn created<T: Serialize>(data: T) -> Response {
    (StatusCode::CREATED, Json(Envelope { ok: true, data })).into_response()
}

/// 200 `{ok:true, data, meta}`.
pub fn ok_meta<T: Serialize, M: Serialize>(data: T, meta: M) -> Response {
    Json(PagedEnvelope {
        ok: true,
        data,
        meta,
    })
    .into_response()
}
