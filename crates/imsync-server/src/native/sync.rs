use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiResult;
use crate::extract::{int_param, QueryParams};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use imsync_core::time::rfc3339;
use imsync_core::Error;
use serde::Deserialize;
use serde::Serialize;
use serde_json::value::RawValue;
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
        "data": e.data.value(),
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
    let page = state.service.sync_raw(&me, since, limit as usize).await?;
    Ok(raw_page_response(&page))
}

/// The sync page as JSON, the stored payloads passed through as they are (a catch-up serves
/// hundreds of thousands of events: parsing and re-serializing each would dominate).
fn raw_page_response(page: &imsync_service::RawSyncPage) -> Response {
    #[derive(Serialize)]
    struct Ev<'a> {
        seq: i64,
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(rename = "conversationId")]
        conversation_id: Option<&'a str>,
        data: &'a RawValue,
        at: String,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Page<'a> {
        events: Vec<Ev<'a>>,
        cursor: i64,
        has_more: bool,
    }
    #[derive(Serialize)]
    struct Envelope<'a> {
        ok: bool,
        data: Page<'a>,
    }
    let null: &RawValue = serde_json::from_str("null").expect("null is JSON");
    let events = page
        .events
        .iter()
        .map(|e| Ev {
            seq: e.seq,
            kind: &e.kind,
            conversation_id: e.conv_id.as_deref(),
            // Stored by the server itself, so valid JSON; a damaged row reads as null.
            data: serde_json::from_str(&e.data).unwrap_or(null),
            at: rfc3339(e.at),
        })
        .collect();
    Json(Envelope {
        ok: true,
        data: Page {
            events,
            cursor: page.cursor,
            has_more: page.has_more,
        },
    })
    .into_response()
}
