//! The WuKongIM binary protocol (docs/wukongim.md): the socket TangSengDaoDao apps chat over
//! (on WebSocket under the HTTP listener, and on a plain TCP listener when one is configured),
//! and the REST calls those apps make around it.

pub mod codec;
pub mod crypto;
mod recv;
mod rest;
mod socket;
mod tcp;
mod wire;

use crate::app::AppState;
use axum::routing::{get, post};
use axum::Router;

pub use rest::SOCKET_PATH;
pub use tcp::serve_tcp;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(SOCKET_PATH, get(socket::upgrade))
        .route("/v1/users/{uid}/im", get(rest::im_addr))
        .route("/v1/users/{uid}", get(rest::user))
        .route("/v1/message/reminder/sync", post(rest::reminder_sync))
        .route("/v1/channels/{id}/{channel_type}", get(rest::channel_info))
        .route("/v1/friend/sync", post(rest::friend_sync))
        .route("/v1/group/my", get(rest::my_groups))
        .route("/v1/common/appconfig", get(rest::app_config))
}
