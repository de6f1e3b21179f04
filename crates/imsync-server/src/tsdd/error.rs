//! TangSengDaoDao's error and success shapes: 401 `{"msg":"请先登录！"}` for a missing or bad
//! token, 400 `{"msg","status":400}` for a client error, the same shape with 404, 405, 413 or 429
//! where the request cannot be served as sent, 500 with a generic message for internal
//! failures, and `{"status":200}` for plain success.
//! The extractors here turn bad tokens and bad JSON into those shapes.

use crate::app::AppState;
use crate::auth::token_from_parts;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use imsync_core::model::User;
use imsync_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;
use serde_json::json;

/// An error on its way out of a TangSengDaoDao handler.
#[derive(Debug)]
pub struct TsddError(pub Error);

impl From<Error> for TsddError {
    fn from(e: Error) -> Self {
        TsddError(e)
    }
}

pub type TsddResult<T> = Result<T, TsddError>;

/// A 400 with the given message.
pub fn bad(msg: impl Into<String>) -> TsddError {
    TsddError(Error::invalid(msg))
}

impl IntoResponse for TsddError {
    fn into_response(self) -> Response {
        match self.0.code {
            ErrorCode::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "msg": "请先登录！" })),
            )
                .into_response(),
            // What a client must act on differently from a bad request (back off, send less,
            // use another method, retry later) keeps its own status.
            ErrorCode::Internal
            | ErrorCode::Unavailable
            | ErrorCode::PayloadTooLarge
            | ErrorCode::RequestTimeout
            | ErrorCode::RateLimited
            | ErrorCode::MethodNotAllowed => {
                let status = StatusCode::from_u16(self.0.code.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                with_status(status, &self.0.message)
            }
            _ => with_status(StatusCode::BAD_REQUEST, &self.0.message),
        }
    }
}

/// `{"msg","status"}` with `status` both the HTTP status and the body's.
pub fn with_status(status: StatusCode, msg: &str) -> Response {
    (
        status,
        Json(json!({ "msg": msg, "status": status.as_u16() })),
    )
        .into_response()
}

/// `{"status":200}`.
pub fn ok_status() -> Response {
    Json(json!({ "status": 200 })).into_response()
}

/// The caller, from the `token:` header (or any header the other faces accept).
pub struct TsddAuth(pub User);

impl FromRequestParts<AppState> for TsddAuth {
    type Rejection = TsddError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = token_from_parts(parts).ok_or_else(|| TsddError(Error::unauthorized()))?;
        match state.service.authenticate(&token).await {
            Ok(user) => Ok(TsddAuth(user)),
            Err(e) if e.code == ErrorCode::Unauthorized => Err(TsddError(Error::unauthorized())),
            Err(e) => Err(TsddError(e)),
        }
    }
}

/// A JSON body; malformed or mistyped JSON is a 400 in this face's shape.
pub struct TsddJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for TsddJson<T> {
    type Rejection = TsddError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                TsddError(Error::new(
                    ErrorCode::PayloadTooLarge,
                    "Request body is too large",
                ))
            } else {
                bad(format!("Could not read the request body: {rejection}"))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(bad("数据格式有误！(empty body)"));
        }
        serde_json::from_slice(&bytes)
            .map(TsddJson)
            .map_err(|e| bad(format!("数据格式有误！({e})")))
    }
}
