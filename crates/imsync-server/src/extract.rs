//! Extractors that turn bad input into the JSON error envelope instead of axum's plain-text
//! rejections: malformed or mistyped JSON is 400 `INVALID_REQUEST`, an oversized body 413
//! `PAYLOAD_TOO_LARGE`, a bad query string 400 `INVALID_PARAM`. [`UnusedBody`] reads the body of
//! a request whose handler needs none, in any face's format.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use imsync_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

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

/// The body of a request whose handler has no use for it, read anyway (up to the body limit)
/// and dropped: a body left unread makes the connection unusable for the client's next request,
/// and one over the limit is refused like any other, as 413 in the face's error format `E`. It
/// must be the handler's last argument, as any extractor of the body.
pub struct UnusedBody<E>(PhantomData<fn() -> E>);

impl<S, E> FromRequest<S> for UnusedBody<E>
where
    S: Send + Sync,
    E: From<Error> + IntoResponse,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(_) => Ok(UnusedBody(PhantomData)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                let mut resp = E::from(Error::new(
                    ErrorCode::PayloadTooLarge,
                    "Request body is too large",
                ))
                .into_response();
                // The rest of the body is not read, so the connection cannot carry another
                // request: say so rather than let the client find out on its next one.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                Err(resp)
            }
            Err(rejection) => Err(E::from(Error::invalid(format!(
                "Could not read the request body: {rejection}"
            )))
            .into_response()),
        }
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
