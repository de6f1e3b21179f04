//! Authentication for every face: the token may come as `Authorization: Bearer`, `X-Auth-Token`,
//! a `token:` header, or `?token=` (realtime endpoints).

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use imsync_core::model::User;
use imsync_core::Error;

pub fn token_from_parts(parts: &Parts) -> Option<String> {
    token_from(&parts.headers, &parts.uri)
}

pub fn token_from(headers: &axum::http::HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if let Some(v) = header("authorization") {
        let mut it = v.splitn(2, ' ');
        let (scheme, rest) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
        if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            return Some(rest.trim().to_owned());
        }
    }
    if let Some(v) = header("x-auth-token").or_else(|| header("token")) {
        return Some(v);
    }
    uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// The authenticated caller; 401 otherwise.
pub struct Auth(pub User);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = token_from_parts(parts).ok_or_else(|| ApiError(Error::unauthorized()))?;
        let user = state.service.authenticate(&token).await?;
        Ok(Auth(user))
    }
}

/// The caller if a valid token was given; anonymous otherwise.
pub struct MaybeAuth(pub Option<User>);

impl FromRequestParts<AppState> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match token_from_parts(parts) {
            Some(token) => Ok(MaybeAuth(state.service.authenticate(&token).await.ok())),
            None => Ok(MaybeAuth(None)),
        }
    }
}
