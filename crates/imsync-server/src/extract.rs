//! Extractors that turn bad input into the JSON error envelope instead of axum's plain-text
//! rejections: malformed or mistyped JSON is 400 `INVALID_REQUEST`, an oversized body 413
//! `PAYLOAD_TOO_LARGE`, a bad query string 400 `INVALID_PARAM`.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use imsync_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;

/// A JSON body. The content type is not checked: clients that forget it still get parsed.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(Error::new(
                    ErrorCode::PayloadTooLarge,
                    "Request body is too large",
                ))
            } else {
                ApiError(Error::invalid(format!(
                    "Could not read the request body: {rejection}"
                )))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError(Error::invalid(
                "Request body must be a JSON object",
            )));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError(Error::invalid(format!("Invalid JSON body: {e}"))))
    }
}

/// A query string.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| QueryParams(q.0))
            .map_err(|e| {
                ApiError(Error::param(format!(
                    "Invalid query string: {}",
                    e.body_text()
                )))
            })
    }
}

/// Parses an optional integer query value, naming the parameter in the error.
pub fn int_param(name: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError(Error::param(format!("{name} must be an integer")))),
    }
}
