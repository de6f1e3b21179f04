//! The TangSengDaoDao / WuKongIM face (docs/tsdd.md): `/v1/...` with TangSengDaoDao's request
//! and response shapes over the same service as the other faces. No CMD messages are generated:
//! other devices learn every change through the conversation `version`, which is an event seq.

mod conversations;
pub(crate) mod error;
mod files;
mod messages;
mod reactions;
pub(crate) mod render;
mod users;

use crate::app::AppState;
use axum::routing::{delete, post, put};
use axum::Router;
use error::{bad, TsddResult};
use imsync_core::model::ConversationKind;
use imsync_service::Channel;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/user/login", post(users::login))
        .route("/v1/users/{uid}/setting", put(users::user_setting))
        .route("/v1/groups/{group_no}/setting", put(users::group_setting))
        .route("/v1/conversation/sync", post(conversations::sync))
        .route("/v1/conversation/syncack", post(conversations::syncack))
        .route(
            "/v1/conversation/extra/sync",
            post(conversations::extra_sync),
        )
        .route(
            "/v1/conversations/{channel_id}/{channel_type}/extra",
            post(conversations::set_extra),
        )
        .route(
            "/v1/conversations/{channel_id}/{channel_type}",
            delete(conversations::delete),
        )
        .route(
            "/v1/coversation/clearUnread",
            put(conversations::clear_unread),
        )
        .route("/v1/message/send", post(messages::send))
        .route(
            "/v1/file/upload",
            axum::routing::get(files::upload_url)
                // The file's own limit applies (the service's), not the JSON body limit.
                .post(files::upload)
                .layer(axum::extract::DefaultBodyLimit::disable())
                .layer(axum::middleware::from_fn(crate::files::upload_clock)),
        )
        .route("/v1/file/preview/{id}", axum::routing::get(files::preview))
        .route(
            "/v1/file/preview/{id}/{*name}",
            axum::routing::get(files::preview_named),
        )
        .route("/v1/message/channel/sync", post(messages::channel_sync))
        .route("/v1/message/extra/sync", post(messages::extra_sync))
        .route("/v1/message/revoke", post(messages::revoke))
        .route("/v1/message", delete(messages::delete_for_me))
        .route("/v1/message/mutual", delete(messages::delete_mutual))
        .route("/v1/message/edit", post(messages::edit))
        .route("/v1/message/offset", post(messages::offset))
        .route("/v1/message/readed", post(messages::readed))
        .route("/v1/message/sync", post(messages::cmd_sync))
        .route("/v1/message/syncack/{seq}", post(messages::cmd_syncack))
        .route("/v1/reaction/sync", post(reactions::sync))
        .route("/v1/reactions", post(reactions::toggle))
}

/// A channel from the wire: 1 person (named by the peer's uid), 2 group.
fn channel(id: &str, channel_type: i64) -> TsddResult<Channel> {
    if id.trim().is_empty() {
        return Err(bad("channel_id不能为空！"));
    }
    let kind = match channel_type {
        1 => ConversationKind::Direct,
        2 => ConversationKind::Group,
        0 => return Err(bad("channel_type不能为空！")),
        other => return Err(bad(format!("unsupported channel_type {other}"))),
    };
    Ok(Channel {
        id: id.trim().to_owned(),
        kind,
    })
}

/// A message id as clients send it: an integer or its decimal string.
fn message_id<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("message_id must be an integer")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("message_id must be an integer")),
        _ => Err(serde::de::Error::custom("message_id must be an integer")),
    }
}
