//! One error type for the service and the store, with a stable code per failure. Each face renders
//! the same error in its own wire format; the table below is the single place where codes and
//! HTTP statuses are declared.

use std::fmt;

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal)),* $(,)?) => {
        /// Stable error codes of the API, each with the HTTP status it answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant),* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The wire name of the code, e.g. `NOT_PARTICIPANT`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),* }
            }

            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status),* }
            }
        }
    };
}

error_codes! {
    InvalidRequest => ("INVALID_REQUEST", 400),
    InvalidParam => ("INVALID_PARAM", 400),
    Unauthorized => ("UNAUTHORIZED", 401),
    InvalidCredentials => ("INVALID_CREDENTIALS", 401),
    Forbidden => ("FORBIDDEN", 403),
    NotParticipant => ("NOT_PARTICIPANT", 403),
    NotSender => ("NOT_SENDER", 403),
    Blocked => ("BLOCKED", 403),
    RegistrationClosed => ("REGISTRATION_CLOSED", 403),
    AccountDisabled => ("ACCOUNT_DISABLED", 403),
    NotFound => ("NOT_FOUND", 404),
    MethodNotAllowed => ("METHOD_NOT_ALLOWED", 405),
    RequestTimeout => ("REQUEST_TIMEOUT", 408),
    Conflict => ("CONFLICT", 409),
    UsernameTaken => ("USERNAME_TAKEN", 409),
    IdempotencyKeyReused => ("IDEMPOTENCY_KEY_REUSED", 409),
    PayloadTooLarge => ("PAYLOAD_TOO_LARGE", 413),
    RangeNotSatisfiable => ("RANGE_NOT_SATISFIABLE", 416),
    RateLimited => ("RATE_LIMITED", 429),
    Internal => ("INTERNAL_ERROR", 500),
    Unavailable => ("SERVICE_UNAVAILABLE", 503),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable code and a message meant for the client. For 5xx codes the message is
/// generic; the detail went to the log where the error was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn param(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParam, message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_participant() -> Self {
        Self::new(
            ErrorCode::NotParticipant,
            "Not a participant of this conversation",
        )
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "Missing or invalid Authorization header",
        )
    }
    /// An internal failure: the detail is logged here and never sent to the client.
    pub fn internal(detail: impl fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(ErrorCode::Internal, "Internal server error")
    }
    pub fn unavailable(detail: impl fmt::Display) -> Self {
        tracing::error!(%detail, "store unavailable");
        Self::new(
            ErrorCode::Unavailable,
            "The database is unavailable, try again later",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_statuses_are_errors() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
            assert!(code.http_status() >= 400);
        }
    }
}
