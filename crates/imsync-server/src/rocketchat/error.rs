//! Rocket.Chat's error bodies (docs/rocketchat.md, "Errors"): a
//! `Meteor.Error(code, reason, details)` is 400
//! `{success:false, error:"<reason> [<code>]", errorType:"<code>", details?}`, a plain
//! `Error` is 400 `{success:false, error}`, a typed route's validation failure has no ` [..]`
//! suffix, and a missing or bad login is the fixed 401 body. Failures of the store stay 5xx with
//! nothing internal in the body.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use imsync_core::{Error, ErrorCode};
use serde_json::{json, Value};

pub const LOGGED_OUT: &str = "You must be logged in to do this.";

#[derive(Debug, Clone, PartialEq)]
pub enum RcError {
    /// 401 for missing or bad credentials.
    Unauthorized,
    /// 401 for a failed login.
    LoginFailed,
    /// 400 `Meteor.Error(code, reason, details?)`.
    Meteor {
        code: String,
        reason: String,
        details: Option<Value>,
    },
    /// 400 plain `Error(message)`: no errorType.
    Plain(String),
    /// 400 from a typed route's validator: `errorType` and the bare message.
    Typed {
        error_type: &'static str,
        message: String,
    },
    /// Any other status with a plain message (404 route, 405, 413, 429, 5xx).
    Status(StatusCode, String),
}

pub type RcResult<T> = Result<T, RcError>;

impl RcError {
    pub fn meteor(code: &str, reason: impl Into<String>) -> Self {
        RcError::Meteor {
            code: code.to_owned(),
            reason: reason.into(),
            details: None,
        }
    }
    pub fn meteor_with(code: &str, reason: impl Into<String>, details: Value) -> Self {
        RcError::Meteor {
            code: code.to_owned(),
            reason: reason.into(),
            details: Some(details),
        }
    }
    pub fn plain(message: impl Into<String>) -> Self {
        RcError::Plain(message.into())
    }
    /// A legacy route's ajv failure: `Meteor.Error('invalid-params', msg)`.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::meteor("invalid-params", message)
    }
    /// A typed route's body validation failure.
    pub fn typed_body(message: impl Into<String>) -> Self {
        RcError::Typed {
            error_type: "invalid-params",
            message: message.into(),
        }
    }
    /// A typed route's query validation failure.
    pub fn typed_query(message: impl Into<String>) -> Self {
        RcError::Typed {
            error_type: "error-invalid-params",
            message: message.into(),
        }
    }
    pub fn not_allowed() -> Self {
        Self::meteor("error-not-allowed", "Not allowed")
    }
}

/// The generic rendering of a service error; handlers map the errors they expect themselves.
impl From<Error> for RcError {
    fn from(e: Error) -> Self {
        match e.code {
            ErrorCode::InvalidRequest | ErrorCode::InvalidParam => {
                RcError::meteor("error-invalid-params", e.message)
            }
            ErrorCode::Unauthorized | ErrorCode::InvalidCredentials => RcError::Unauthorized,
            ErrorCode::Forbidden | ErrorCode::NotParticipant | ErrorCode::NotSender => {
                RcError::not_allowed()
            }
            ErrorCode::RegistrationClosed | ErrorCode::Blocked => {
                RcError::meteor("error-not-allowed", e.message)
            }
            ErrorCode::AccountDisabled => RcError::meteor("error-user-is-not-activated", e.message),
            ErrorCode::NotFound => RcError::meteor("error-not-found", e.message),
            ErrorCode::Conflict | ErrorCode::UsernameTaken | ErrorCode::IdempotencyKeyReused => {
                RcError::meteor("error-duplicate", e.message)
            }
            ErrorCode::MethodNotAllowed => {
                RcError::Status(StatusCode::METHOD_NOT_ALLOWED, e.message)
            }
            ErrorCode::PayloadTooLarge => RcError::Status(StatusCode::PAYLOAD_TOO_LARGE, e.message),
            ErrorCode::RequestTimeout => RcError::Status(StatusCode::REQUEST_TIMEOUT, e.message),
            ErrorCode::RateLimited => RcError::Status(StatusCode::TOO_MANY_REQUESTS, e.message),
            ErrorCode::RangeNotSatisfiable => {
                RcError::Status(StatusCode::RANGE_NOT_SATISFIABLE, e.message)
            }
            ErrorCode::Internal => RcError::Status(StatusCode::INTERNAL_SERVER_ERROR, e.message),
            ErrorCode::Unavailable => RcError::Status(StatusCode::SERVICE_UNAVAILABLE, e.message),
        }
    }
}

/// Rocket.Chat's responses are never cached.
pub fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    resp
}

impl IntoResponse for RcError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            RcError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({
                    "success": false,
                    "error": LOGGED_OUT,
                    "status": "error",
                    "message": LOGGED_OUT,
                }),
            ),
            RcError::LoginFailed => (
                StatusCode::UNAUTHORIZED,
                json!({
                    "success": false,
                    "status": "error",
                    "error": "Unauthorized",
                    "message": "Unauthorized",
                }),
            ),
            RcError::Meteor {
                code,
                reason,
                details,
            } => {
                let mut v = json!({
                    "success": false,
                    "error": format!("{reason} [{code}]"),
                    "errorType": code,
                });
                if let Some(d) = details {
                    v["details"] = d;
                }
                (StatusCode::BAD_REQUEST, v)
            }
            RcError::Plain(message) => (
                StatusCode::BAD_REQUEST,
                json!({ "success": false, "error": message }),
            ),
            RcError::Typed {
                error_type,
                message,
            } => (
                StatusCode::BAD_REQUEST,
                json!({ "success": false, "errorType": error_type, "error": message }),
            ),
            RcError::Status(status, message) => {
                (status, json!({ "success": false, "error": message }))
            }
        };
        no_store((status, Json(body)).into_response())
    }
}
