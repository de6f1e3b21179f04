use super::{created, ok, render};
use crate::app::AppState;
use crate::auth::{token_from, Auth, MaybeAuth};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UnusedBody};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use imsync_core::Error;
use imsync_service::{NewAccount, ProfilePatch, Session};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// `POST /api/im/register` (token-only accounts, as the SDK registers agents).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    username: String,
    display_name: Option<String>,
    agent_type: Option<String>,
    capabilities: Option<Value>,
    description: Option<String>,
    endpoint: Option<String>,
    webhook_secret: Option<String>,
    workspace_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordRegisterBody {
    username: String,
    display_name: Option<String>,
    password: Option<String>,
    role: Option<String>,
    agent_type: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    username: String,
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBody {
    display_name: Option<String>,
    avatar_url: Option<String>,
    bio: Option<String>,
    metadata: Option<Value>,
}

fn session_json(s: &Session) -> Value {
    json!({
        "imUserId": s.user.id,
        "userId": s.user.id,
        "username": s.user.username,
        "displayName": s.user.display_name,
        "role": s.user.role.as_str(),
        "token": s.token,
        "expiresIn": expires_in(s.lifetime_ms),
        "expiresAt": imsync_core::time::rfc3339(s.expires_at),
        "isNew": s.is_new,
        "capabilities": s.user.metadata.get("capabilities").cloned().unwrap_or(json!([])),
    })
}

fn user_session_json(s: &Session) -> Value {
    json!({
        "user": render::user(&s.user),
        "token": s.token,
        "expiresIn": expires_in(s.lifetime_ms),
        "expiresAt": imsync_core::time::rfc3339(s.expires_at),
    })
}

/// A token lifetime as the Prismer API writes it ("7d", "12h", "30m", "2s"): the largest unit
/// that divides it.
pub(crate) fn expires_in(ms: i64) -> String {
    let secs = (ms / 1000).max(0);
    match secs {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[utoipa::path(post, path = "/api/im/register", request_body = RegisterBody,
    responses((status = 201, description = "Registered"), (status = 200, description = "Existing account, caller proved ownership"), (status = 409, description = "Username taken")))]
pub async fn register(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    JsonBody(b): JsonBody<RegisterBody>,
) -> ApiResult<Response> {
    let mut metadata = serde_json::Map::new();
    for (k, v) in [
        ("capabilities", b.capabilities),
        ("description", b.description.map(Value::from)),
        ("endpoint", b.endpoint.map(Value::from)),
        ("workspaceId", b.workspace_id.map(Value::from)),
    ] {
        if let Some(v) = v {
            metadata.insert(k.into(), v);
        }
    }
    // The webhook secret is accepted for compatibility and never stored in readable metadata.
    let _ = b.webhook_secret;
    let session = state
        .service
        .register(
            caller,
            NewAccount {
                username: b.username,
                display_name: b.display_name,
                role: b.kind,
                agent_type: b.agent_type,
                password: None,
                metadata: Some(Value::Object(metadata)),
            },
        )
        .await?;
    let body = session_json(&session);
    Ok(if session.is_new {
        created(body)
    } else {
        ok(body)
    })
}

#[utoipa::path(post, path = "/api/im/users/register", request_body = PasswordRegisterBody,
    responses((status = 201, description = "Registered"), (status = 409, description = "Username taken")))]
pub async fn password_register(
    State(state): State<AppState>,
    JsonBody(b): JsonBody<PasswordRegisterBody>,
) -> ApiResult<Response> {
    let session = state
        .service
        .register(
            None,
            NewAccount {
                username: b.username,
                display_name: b.display_name,
                role: b.role,
                agent_type: b.agent_type,
                password: b.password,
                metadata: None,
            },
        )
        .await?;
    Ok(created(user_session_json(&session)))
}

#[utoipa::path(post, path = "/api/im/users/login", request_body = LoginBody,
    responses((status = 200, description = "Logged in"), (status = 401, description = "Bad credentials")))]
pub async fn login(
    State(state): State<AppState>,
    JsonBody(b): JsonBody<LoginBody>,
) -> ApiResult<Response> {
    let session = state.service.login(&b.username, &b.password).await?;
    Ok(ok(user_session_json(&session)))
}

#[utoipa::path(get, path = "/api/im/me", responses((status = 200, description = "The caller's account and stats")))]
pub async fn me(State(state): State<AppState>, Auth(user): Auth) -> ApiResult<Response> {
    let s = state.service.stats(&user).await?;
    Ok(ok(json!({
        "user": render::user(&user),
        "stats": {
            "conversationCount": s.conversation_count,
            "directCount": s.direct_count,
            "groupCount": s.group_count,
            "contactCount": s.contact_count,
            "messagesSent": s.messages_sent,
            "unreadCount": s.unread_count,
        },
        "bindings": [],
        "credits": null,
    })))
}

#[utoipa::path(patch, path = "/api/im/me", request_body = ProfileBody, responses((status = 200, description = "Updated profile")))]
pub async fn update_me(
    State(state): State<AppState>,
    Auth(user): Auth,
    JsonBody(b): JsonBody<ProfileBody>,
) -> ApiResult<Response> {
    let u = state
        .service
        .update_profile(
            &user,
            ProfilePatch {
                display_name: b.display_name,
                avatar_url: b.avatar_url,
                bio: b.bio,
                metadata: b.metadata,
            },
        )
        .await?;
    Ok(ok(render::user(&u)))
}

#[utoipa::path(delete, path = "/api/im/me", responses((status = 200, description = "Account deactivated")))]
pub async fn delete_me(
    State(state): State<AppState>,
    Auth(user): Auth,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    state.service.delete_account(&user).await?;
    Ok(ok(json!({ "deleted": true, "userId": user.id })))
}

#[utoipa::path(post, path = "/api/im/token/refresh", responses((status = 200, description = "A new token"), (status = 401, description = "Unknown token")))]
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    let token = token_from(&headers, &uri).ok_or_else(|| ApiError(Error::unauthorized()))?;
    let s = state.service.refresh_token(&token).await?;
    Ok(ok(json!({
        "token": s.token,
        "expiresIn": expires_in(s.lifetime_ms),
        "expiresAt": imsync_core::time::rfc3339(s.expires_at),
    })))
}

#[utoipa::path(post, path = "/api/im/logout", responses((status = 200, description = "The token used no longer authenticates; its realtime connections end"), (status = 401, description = "Unknown token")))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    let token = token_from(&headers, &uri).ok_or_else(|| ApiError(Error::unauthorized()))?;
    state.service.authenticate(&token).await?;
    state.service.logout(&token).await?;
    Ok(ok(json!({ "loggedOut": true })))
}

#[utoipa::path(get, path = "/api/im/health", responses((status = 200, description = "Service is up")))]
pub async fn health(State(state): State<AppState>) -> Response {
    ok(json!({
        "status": "ok",
        "service": "imsync",
        "version": env!("CARGO_PKG_VERSION"),
        "storage": state.service.store().description(),
    }))
}
