use super::ok;
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiResult;
use crate::extract::{int_param, QueryParams};
use axum::extract::State;
use axum::response::Response;
use imsync_core::time::rfc3339;
use imsync_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct SyncQuery {
    since: Option<String>,
    limit: Option<String>,
}

/// One event as `GET /api/im/sync` and the sync stream carry it.
pub fn event_json(e: &imsync_core::model::Event) -> Value {
    json!({
        "seq": e.seq,
        "type": e.kind,
        "conversationId": e.conversation_id,
        "data": e.data,
        "at": rfc3339(e.at),
    })
}

#[utoipa::path(get, path = "/api/im/sync",
    params(("since" = Option<i64>, Query, description = "Cursor from the previous page; 0 for everything"),
        ("limit" = Option<i64>, Query, description = "1 to 500, default 100")),
    responses((status = 200, description = "`{events, cursor, hasMore}`"), (status = 400, description = "INVALID_PARAM")))]
pub async fn sync(
    State(state): State<AppState>,
    Auth(me): Auth,
    QueryParams(q): QueryParams<SyncQuery>,
) -> ApiResult<Response> {
    let since = int_param("since", q.since.as_deref())?.unwrap_or(0);
    if since < 0 {
        return Err(Error::param("since must not be negative").into());
    }
    let limit = int_param("limit", q.limit.as_deref())?.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Error::param("limit must be between 1 and 500").into());
    }
    let page = state.service.sync(&me, since, limit as usize).await?;
    Ok(ok(json!({
        "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
        "cursor": page.cursor,
        "hasMore": page.has_more,
    })))
}
