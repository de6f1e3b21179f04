use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiResult;
use crate::extract::{int_param, QueryParams};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use imsync_core::time::rfc3339;
use imsync_core::Error;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write;
use utoipa::ToSchema;

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

/// One event of a sync page. The page is written out by hand (see [`raw_page_response`]); these
/// types describe that JSON.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct SyncEvent {
    seq: i64,
    /// The event's kind, e.g. `message.new`.
    #[serde(rename = "type")]
    kind: String,
    #[schema(required = true)]
    conversation_id: Option<String>,
    /// The event's payload, as the realtime frames carry it.
    data: Value,
    at: String,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct SyncPage {
    events: Vec<SyncEvent>,
    /// The `since` of the next page.
    cursor: i64,
    has_more: bool,
}

#[utoipa::path(get, path = "/api/im/sync",
    params(("since" = Option<i64>, Query, description = "Cursor from the previous page; 0 for everything"),
        ("limit" = Option<i64>, Query, description = "1 to 500, default 100")),
    responses((status = 200, description = "The caller's events after `since`, oldest first", body = super::Envelope<SyncPage>),
        (status = 400, description = "INVALID_PARAM")))]
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

/// The sync page as JSON, written out by hand with the stored payloads passed through as they
/// are: a catch-up serves hundreds of thousands of events, and parsing each payload (even only to
/// check it, as `RawValue` does) took a seventh of the server's CPU.
fn raw_page_response(page: &imsync_service::RawSyncPage) -> Response {
    let size: usize = page.events.iter().map(|e| e.data.len() + 128).sum();
    let mut body: Vec<u8> = Vec::with_capacity(size + 64);
    body.extend_from_slice(br#"{"ok":true,"data":{"events":["#);
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        let _ = write!(body, r#"{{"seq":{},"type":"#, e.seq);
        json_str(&mut body, &e.kind);
        body.extend_from_slice(br#","conversationId":"#);
        match &e.conv_id {
            Some(id) => json_str(&mut body, id),
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(br#","data":"#);
        // Every payload is an object the server rendered itself; a row cut short reads as null
        // rather than breaking the whole page.
        let data = e.data.trim();
        if data.starts_with('{') && data.ends_with('}') {
            body.extend_from_slice(data.as_bytes());
        } else {
            body.extend_from_slice(b"null");
        }
        let _ = write!(body, r#","at":"{}"}}"#, rfc3339(e.at));
    }
    let _ = write!(
        body,
        r#"],"cursor":{},"hasMore":{}}}}}"#,
        page.cursor, page.has_more
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use imsync_service::RawEvent;

    #[tokio::test]
    async fn the_page_is_the_json_of_its_events() {
        let page = imsync_service::RawSyncPage {
            events: vec![
                RawEvent {
                    seq: 7,
                    kind: "message.new".into(),
                    conv_id: Some("c\"1".into()),
                    data: r#"{"content":"a \"quoted\" ✓","n":[1,{"x":null}]}"#.into(),
                    at: 1_714_557_600_123,
                },
                RawEvent {
                    seq: 9,
                    kind: "presence".into(),
                    conv_id: None,
                    data: r#"{"cut short"#.into(),
                    at: 0,
                },
            ],
            cursor: 9,
            has_more: true,
        };
        let response = raw_page_response(&page);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let got: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            got,
            json!({"ok": true, "data": {"events": [
                {"seq": 7, "type": "message.new", "conversationId": "c\"1",
                 "data": {"content": "a \"quoted\" ✓", "n": [1, {"x": null}]},
                 "at": "2024-05-01T10:00:00.123Z"},
                {"seq": 9, "type": "presence", "conversationId": null, "data": null,
                 "at": "1970-01-01T00:00:00.000Z"},
            ], "cursor": 9, "hasMore": true}})
        );
    }
}
