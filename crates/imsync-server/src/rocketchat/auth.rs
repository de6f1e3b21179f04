//! Login, logout and `me`, and the credentials every other call carries: `X-User-Id` plus
//! `X-Auth-Token`, where the token (any imsync session token) must belong to that user. The
//! check runs before any parameter is looked at.

use super::error::{RcError, RcResult};
use super::params::RcBody;
use super::{render, success};
use crate::app::AppState;
use crate::extract::UnusedBody;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use imsync_core::model::User;
use imsync_core::ErrorCode;
use serde_json::{json, Value};

/// The authenticated caller and the token they used.
pub struct RcAuth(pub User, pub String);

fn header(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Puts a user who logs in here into the default channel if they were never in it (new accounts
/// join it at registration; this covers accounts made while it was off). A failure there must not
/// fail the login.
async fn arrive(state: &AppState, user: &User) {
    if let Err(e) = state.service.ensure_default_channel(user).await {
        tracing::warn!(error = %e, user = %user.id, "could not join the default channel");
    }
}

impl FromRequestParts<AppState> for RcAuth {
    type Rejection = RcError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> RcResult<Self> {
        let (Some(user_id), Some(token)) =
            (header(parts, "x-user-id"), header(parts, "x-auth-token"))
        else {
            return Err(RcError::Unauthorized);
        };
        let user = state
            .service
            .authenticate(&token)
            .await
            .map_err(|e| match e.code {
                ErrorCode::Internal | ErrorCode::Unavailable => RcError::from(e),
                _ => RcError::Unauthorized,
            })?;
        if user.id != user_id {
            return Err(RcError::Unauthorized);
        }
        Ok(RcAuth(user, token))
    }
}

/// The login name of `user`, `username` or `email`; `user` may also be `{username}`/`{email}`.
fn login_name(body: &serde_json::Map<String, Value>) -> Option<String> {
    let pick = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o
                .get("username")
                .or_else(|| o.get("email"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        }
    };
    ["user", "username", "email"]
        .iter()
        .find_map(|k| body.get(*k).and_then(pick))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn login_response(user: &User, token: &str) -> Response {
    success(json!({
        "status": "success",
        "data": { "userId": user.id, "authToken": token, "me": render::me(user) },
    }))
}

/// `POST /api/v1/login`: a password login, or `{resume: token}`.
pub async fn login(State(state): State<AppState>, RcBody(body): RcBody) -> RcResult<Response> {
    let failed = |e: imsync_core::Error| match e.code {
        ErrorCode::Internal | ErrorCode::Unavailable => RcError::from(e),
        _ => RcError::LoginFailed,
    };
    if let Some(token) = body.get("resume").and_then(Value::as_str) {
        let user = state.service.authenticate(token).await.map_err(failed)?;
        arrive(&state, &user).await;
        return Ok(login_response(&user, token));
    }
    let name = login_name(&body).ok_or(RcError::LoginFailed)?;
    let password = body
        .get("password")
        .and_then(Value::as_str)
        .ok_or(RcError::LoginFailed)?;
    let session = state.service.login(&name, password).await.map_err(failed)?;
    arrive(&state, &session.user).await;
    Ok(login_response(&session.user, &session.token))
}

/// `POST /api/v1/logout`: ends the session of the token used.
pub async fn logout(
    State(state): State<AppState>,
    RcAuth(_, token): RcAuth,
    _body: UnusedBody<RcError>,
) -> RcResult<Response> {
    state.service.logout(&token).await?;
    Ok(success(json!({
        "status": "success",
        "data": { "message": "You've been logged out!" },
    })))
}

/// `GET /api/v1/me`.
pub async fn me(RcAuth(me, _): RcAuth) -> RcResult<Response> {
    Ok(success(render::me(&me)))
}
