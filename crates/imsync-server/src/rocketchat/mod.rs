//! The Rocket.Chat face: Rocket.Chat's REST API under `/api/v1` (docs/rocketchat.md) for its
//! clients. Rooms are conversations (`t`: d direct, p private group, c public group), `_updatedAt`
//! is the message's strictly increasing `updated_at`, and the trash is the deleted messages'
//! tombstones. Every response is `{…, success:true}` or one of the error bodies of
//! [`error`]; nothing falls through to another face's error format.

mod auth;
mod browse;
mod chat;
mod directory;
pub(crate) mod error;
mod files;
pub(crate) mod params;
pub(crate) mod render;
mod rooms;
mod sync;

use crate::app::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use error::{no_store, RcError};
use serde_json::Value;

/// 200 with the handler's object plus `success:true`.
pub(crate) fn success(mut v: Value) -> Response {
    if let Some(o) = v.as_object_mut() {
        o.insert("success".into(), Value::Bool(true));
    }
    no_store(Json(v).into_response())
}

async fn wrong_method() -> RcError {
    RcError::Status(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed".into())
}

async fn no_endpoint() -> RcError {
    RcError::Status(StatusCode::NOT_FOUND, "API endpoint not found".into())
}

fn with_fallback(r: MethodRouter<AppState>) -> MethodRouter<AppState> {
    r.fallback(wrong_method)
}

pub fn router() -> Router<AppState> {
    let routes: Vec<(&str, MethodRouter<AppState>)> = vec![
        ("login", post(auth::login)),
        ("logout", post(auth::logout).get(auth::logout)),
        ("me", get(auth::me)),
        ("chat.postMessage", post(chat::post_message)),
        ("chat.sendMessage", post(chat::send_message)),
        ("chat.update", post(chat::update)),
        ("chat.delete", post(chat::delete)),
        ("chat.react", post(chat::react)),
        ("chat.getMessage", get(chat::get_message)),
        ("chat.getThreadMessages", get(chat::get_thread_messages)),
        ("chat.syncMessages", get(sync::sync_messages)),
        ("chat.syncThreadMessages", get(sync::sync_thread_messages)),
        ("im.create", post(rooms::im_create)),
        ("channels.create", post(rooms::channels_create)),
        ("groups.create", post(rooms::groups_create)),
        ("channels.join", post(rooms::channels_join)),
        ("channels.invite", post(rooms::channels_invite)),
        ("groups.invite", post(rooms::groups_invite)),
        ("channels.kick", post(rooms::channels_kick)),
        ("groups.kick", post(rooms::groups_kick)),
        ("rooms.get", get(rooms::rooms_get)),
        ("subscriptions.get", get(rooms::subscriptions_get)),
        (
            "subscriptions.getOne",
            get(directory::subscriptions_get_one),
        ),
        ("subscriptions.read", post(directory::subscriptions_read)),
        ("users.info", get(directory::users_info)),
        ("users.list", get(browse::users_list)),
        ("channels.list", get(browse::channels_list)),
        ("channels.counters", get(browse::channels_counters)),
        ("subscriptions.unread", post(browse::subscriptions_unread)),
        ("chat.getThreadsList", get(browse::get_threads_list)),
        ("dm.create", post(rooms::im_create)),
        ("users.register", post(directory::users_register)),
        ("channels.list.joined", get(directory::channels_list_joined)),
        ("groups.list", get(directory::groups_list)),
        ("im.list", get(directory::im_list)),
        ("dm.list", get(directory::im_list)),
        ("channels.info", get(directory::channels_info)),
        ("groups.info", get(directory::groups_info)),
        ("rooms.info", get(directory::rooms_info)),
        ("channels.members", get(directory::members)),
        ("groups.members", get(directory::members)),
        ("channels.history", get(directory::history)),
        ("groups.history", get(directory::history)),
        ("im.history", get(directory::history)),
        ("dm.history", get(directory::history)),
        ("channels.messages", get(directory::history)),
        ("dm.messages", get(directory::history)),
        ("channels.leave", post(directory::leave)),
        ("groups.leave", post(directory::leave)),
    ];
    let mut r = Router::new();
    for (name, m) in routes {
        r = r.route(&format!("/api/v1/{name}"), with_fallback(m));
    }
    r.route(
        "/api/v1/rooms.upload/{rid}",
        // The file's own limit applies (the service's), not the JSON body limit.
        with_fallback(post(files::rooms_upload))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .layer(axum::middleware::from_fn(crate::files::upload_clock)),
    )
    .route(
        "/file-upload/{id}/{name}",
        with_fallback(get(files::file_upload)),
    )
    .route("/api/info", with_fallback(get(directory::info)))
    .route("/api/v1/{*rest}", axum::routing::any(no_endpoint))
}
