//! Realtime push: WebSocket (`/ws`), SSE (`/sse`) and the sync stream (`/api/im/sync/stream`).
//!
//! Resume without a gap: a connection that gives `since` subscribes to the hub first, then reads
//! the backlog after `since` from the store page by page and sends it, then sends live events,
//! skipping those at or below the last seq already sent. The subscription catches everything the
//! hub offers from the moment it exists, and the hub only offers committed events, so every event
//! is either in the backlog the store returns or in the subscription's queue — usually both, and
//! the skip removes the overlap.

mod frames;
mod sse;
mod ws;

pub use ws::default_idle_timeout;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::int_param;
use axum::routing::get;
use axum::Router;
use imsync_core::model::{Event, User};
use imsync_core::{Error, Seq};
use imsync_service::Service;
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/sse", get(sse::frames))
        .route("/api/im/sync/stream", get(sse::sync_stream))
}

#[derive(Deserialize)]
pub struct RealtimeQuery {
    token: Option<String>,
    since: Option<String>,
}

impl RealtimeQuery {
    fn since(&self) -> Result<Option<Seq>, ApiError> {
        match int_param("since", self.since.as_deref())? {
            Some(s) if s < 0 => Err(Error::param("since must not be negative").into()),
            other => Ok(other),
        }
    }
}

/// The events visible to a user after a seq, read from the store a page at a time, in seq order.
pub(crate) struct Backlog<'a> {
    service: &'a Service,
    user: &'a User,
    cursor: Seq,
    done: bool,
}

impl<'a> Backlog<'a> {
    pub(crate) fn after(service: &'a Service, user: &'a User, since: Seq) -> Self {
        Backlog {
            service,
            user,
            cursor: since,
            done: false,
        }
    }

    /// Whether every page was read.
    pub(crate) fn finished(&self) -> bool {
        self.done
    }

    /// The next page, or `None` once everything up to the store's head was read.
    pub(crate) async fn next_page(&mut self) -> Result<Option<Vec<Event>>, Error> {
        if self.done {
            return Ok(None);
        }
        let page = self.service.sync(self.user, self.cursor, 500).await?;
        self.cursor = page.cursor;
        self.done = !page.has_more;
        Ok(Some(page.events))
    }
}

pub(crate) fn authenticated_frame(user: &User) -> String {
    json!({
        "type": "authenticated",
        "payload": { "userId": user.id, "username": user.username, "displayName": user.display_name },
        "timestamp": imsync_core::time::now_ms(),
    })
    .to_string()
}

/// Tells the users who share a conversation with `user` that their presence changed.
pub(crate) async fn announce_presence(service: &Service, user: &User, status: &str) {
    let peers = match service.peers(user).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e.message, "presence fan-out skipped");
            return;
        }
    };
    let frame = json!({
        "type": "presence.changed",
        "payload": {
            "userId": user.id,
            "status": status,
            "lastSeen": imsync_core::time::rfc3339(imsync_core::time::now_ms()),
        },
        "timestamp": imsync_core::time::now_ms(),
    });
    service.hub().deliver(
        &peers,
        &imsync_service::hub::Delivery::Ephemeral(std::sync::Arc::new(frame)),
    );
}
