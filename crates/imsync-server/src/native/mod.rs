//! The native face: Prismer Cloud's IM API under `/api/im` (docs/native.md). Every response is
//! `{ok:true, data, meta?}` or the error envelope of [`crate::error`].

mod accounts;
mod conversations;
mod direct;
mod groups;
mod messages;
mod render;
mod sync;
mod users;

pub use sync::event_json;

use crate::app::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use utoipa::OpenApi;
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
        .routes(routes!(direct::send, direct::history))
        .routes(routes!(groups::create, groups::list))
        .routes(routes!(groups::get))
        .routes(routes!(groups::send, groups::history))
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
        .routes(routes!(users::profile))
        .routes(routes!(users::by_username))
        .routes(routes!(users::presence))
        .routes(routes!(sync::sync))
}

/// 200 `{ok:true, data}`.
pub fn ok(data: Value) -> Response {
    Json(json!({ "ok": true, "data": data })).into_response()
}

/// 201 `{ok:true, data}`.
pub fn created(data: Value) -> Response {
    (
        StatusCode::CREATED,
        Json(json!({ "ok": true, "data": data })),
    )
        .into_response()
}

/// 200 `{ok:true, data, meta}`.
pub fn ok_meta(data: Value, meta: Value) -> Response {
    Json(json!({ "ok": true, "data": data, "meta": meta })).into_response()
}
