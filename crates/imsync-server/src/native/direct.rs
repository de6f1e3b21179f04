use super::messages::{history_response, send_response, HistoryQuery, SendBody};
use super::ok_meta;
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::ApiResult;
use crate::extract::{JsonBody, QueryParams};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

#[utoipa::path(post, path = "/api/im/direct/{userId}/messages", params(("userId" = String, Path, description = "User id or username"),
    ("X-Idempotency-Key" = Option<String>, Header,)), request_body = SendBody,
    responses((status = 201, description = "Sent; the direct conversation is created on first use")))]
pub async fn send(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    JsonBody(b): JsonBody<SendBody>,
) -> ApiResult<Response> {
    let new = b.into_new(&headers)?;
    let outcome = state.service.send_direct(&me, &user_id, new).await?;
    Ok(send_response(&outcome))
}

#[utoipa::path(get, path = "/api/im/direct/{userId}/messages", params(("userId" = String, Path,),
    ("limit" = Option<i64>, Query,), ("before" = Option<String>, Query,), ("after" = Option<String>, Query,)),
    responses((status = 200, description = "Messages, oldest first")))]
pub async fn history(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(user_id): Path<String>,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> ApiResult<Response> {
    let limit = q.limit()?;
    let (before, after) = q.cursors();
    match state
        .service
        .direct_history(&me, &user_id, before, after, limit)
        .await?
    {
        Some(page) => Ok(history_response(&page, limit)),
        None => Ok(ok_meta(
            json!([]),
            json!({ "total": 0, "pageSize": limit, "conversationId": null }),
        )),
    }
}
