//! The native face's error envelope: `{ok:false, error:{code, message}}` with the code's status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use imsync_core::{Error, ErrorCode};
use serde_json::json;

/// An error on its way out of a native handler.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (
            status,
            Json(json!({
                "ok": false,
                "error": { "code": self.0.code.as_str(), "message": self.0.message },
            })),
        )
            .into_response();
        if self.0.code == ErrorCode::RateLimited {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

pub fn not_found_route() -> ApiError {
    ApiError(Error::new(ErrorCode::NotFound, "No such route"))
}

pub fn method_not_allowed() -> ApiError {
    ApiError(Error::new(
        ErrorCode::MethodNotAllowed,
        "Method not allowed on this route",
    ))
}
