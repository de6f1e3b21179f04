//! The native face's error envelope: `{ok:false, error:{code, message}}` with the code's status,
//! and the choice of a face's error format by path for the answers no handler makes (unknown
//! routes, wrong methods, the rate limit, axum's own rejections, panics).

use crate::rocketchat::error::RcError;
use crate::tsdd::error::TsddError;
use axum::http::{HeaderValue, StatusCode};
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
        native_body(status, self.0.code, &self.0.message)
    }
}

fn native_body(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({
            "ok": false,
            "error": { "code": code.as_str(), "message": message },
        })),
    )
        .into_response();
    if code == ErrorCode::RateLimited {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
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

/// The API face a path belongs to. The native realtime endpoints and everything outside the
/// other faces' paths answer in the native format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Native,
    RocketChat,
    Tsdd,
}

impl Face {
    pub fn of(path: &str) -> Face {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        // `/websocket` is Rocket.Chat's realtime (DDP) endpoint, `/file-upload` its downloads.
        if under("/api/v1") || under("/websocket") || under("/file-upload") {
            Face::RocketChat
        } else if under("/v1") {
            Face::Tsdd
        } else {
            Face::Native
        }
    }

    /// `e` in this face's format.
    pub fn error(self, e: Error) -> Response {
        let rate_limited = e.code == ErrorCode::RateLimited;
        let mut resp = match self {
            Face::Native => ApiError(e).into_response(),
            Face::RocketChat => RcError::from(e).into_response(),
            Face::Tsdd => TsddError(e).into_response(),
        };
        if rate_limited {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        resp
    }

    /// 404 for a path no route matches.
    pub fn no_route(self) -> Response {
        match self {
            Face::Native => not_found_route().into_response(),
            Face::RocketChat => {
                RcError::Status(StatusCode::NOT_FOUND, "API endpoint not found".into())
                    .into_response()
            }
            Face::Tsdd => crate::tsdd::error::with_status(StatusCode::NOT_FOUND, "No such route"),
        }
    }

    /// 405 for a route that exists with other methods.
    pub fn wrong_method(self) -> Response {
        match self {
            Face::Native => method_not_allowed().into_response(),
            _ => self.error(Error::new(
                ErrorCode::MethodNotAllowed,
                "Method not allowed on this route",
            )),
        }
    }

    /// An error response someone else made (an axum rejection's plain text, an empty 405, a
    /// panic), rewritten in this face's format with its status kept: the status is what the
    /// client acts on, and it was chosen by code that knew the cause.
    pub fn rewrite(self, status: StatusCode, text: &str) -> Response {
        let code = match status.as_u16() {
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            429 => ErrorCode::RateLimited,
            503 => ErrorCode::Unavailable,
            500..=599 => ErrorCode::Internal,
            _ => ErrorCode::InvalidRequest,
        };
        // A server error's text may describe internals; the client gets the generic message.
        let message = match code {
            ErrorCode::Internal => "Internal server error",
            ErrorCode::Unavailable => "The service is unavailable, try again later",
            _ if text.trim().is_empty() => status.canonical_reason().unwrap_or("Request failed"),
            _ => text.trim(),
        };
        let mut resp = match self {
            Face::Native => native_body(status, code, message),
            Face::RocketChat => match status.as_u16() {
                400 => RcError::from(Error::new(code, message)).into_response(),
                401 => RcError::Unauthorized.into_response(),
                _ => RcError::Status(status, message.to_owned()).into_response(),
            },
            Face::Tsdd => match code {
                ErrorCode::Unauthorized => TsddError(Error::unauthorized()).into_response(),
                _ => crate::tsdd::error::with_status(status, message),
            },
        };
        *resp.status_mut() = status;
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faces_are_chosen_by_whole_path_segments() {
        assert_eq!(Face::of("/api/v1/login"), Face::RocketChat);
        assert_eq!(Face::of("/api/v1"), Face::RocketChat);
        assert_eq!(Face::of("/api/v10/login"), Face::Native);
        assert_eq!(Face::of("/websocket"), Face::RocketChat);
        assert_eq!(Face::of("/websockets"), Face::Native);
        assert_eq!(Face::of("/v1/message/send"), Face::Tsdd);
        assert_eq!(Face::of("/v1"), Face::Tsdd);
        assert_eq!(Face::of("/v1x"), Face::Native);
        assert_eq!(Face::of("/api/im/me"), Face::Native);
        assert_eq!(Face::of("/ws"), Face::Native);
    }
}
