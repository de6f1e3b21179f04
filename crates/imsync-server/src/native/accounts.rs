use super::render::UserView;
use super::{created, ok, render, Envelope};
use crate::app::AppState;
use crate::auth::{token_from, Auth, MaybeAuth};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UnusedBody};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use imsync_core::Error;
use imsync_service::{NewAccount, ProfilePatch, Session};
use serde::{Deserialize, Serialize};
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

/// `data` of a token-only registration, as the SDK reads it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    im_user_id: String,
    user_id: String,
    username: String,
    display_name: String,
    role: &'static str,
    token: String,
    /// The token's lifetime, e.g. `7d`.
    expires_in: String,
    expires_at: String,
    is_new: bool,
    /// As registered; `[]` when none were given.
    capabilities: Value,
}

fn session_json(s: &Session) -> Registered {
    Registered {
        im_user_id: s.user.id.clone(),
        user_id: s.user.id.clone(),
        username: s.user.username.clone(),
        display_name: s.user.display_name.clone(),
        role: s.user.role.as_str(),
        token: s.token.clone(),
        expires_in: expires_in(s.lifetime_ms),
        expires_at: imsync_core::time::rfc3339(s.expires_at),
        is_new: s.is_new,
        capabilities: s
            .user
            .metadata
            .get("capabilities")
            .cloned()
            .unwrap_or(json!([])),
    }
}

/// `data` of a password registration or a login.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSession {
    user: UserView,
    token: String,
    expires_in: String,
    expires_at: String,
}

fn user_session_json(s: &Session) -> UserSession {
    UserSession {
        user: render::user(&s.user),
        token: s.token.clone(),
        expires_in: expires_in(s.lifetime_ms),
        expires_at: imsync_core::time::rfc3339(s.expires_at),
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    conversation_count: i64,
    direct_count: i64,
    group_count: i64,
    contact_count: i64,
    messages_sent: i64,
    unread_count: i64,
}

/// `data` of `GET /me`.
#[derive(Serialize, ToSchema)]
pub struct MeData {
    user: UserView,
    stats: Stats,
    /// Always empty: no external bindings here.
    bindings: Vec<Value>,
    /// Always null: no credits here.
    #[schema(value_type = Option<Object>, required = true)]
    credits: Option<Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountDeleted {
    deleted: bool,
    user_id: String,
}

/// `data` of a token refresh.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refreshed {
    token: String,
    expires_in: String,
    expires_at: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggedOut {
    logged_out: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    status: &'static str,
    service: &'static str,
    version: &'static str,
    /// Which database, e.g. `sqlite` or `postgres`.
    storage: String,
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
    responses((status = 201, description = "Registered", body = Envelope<Registered>),
        (status = 200, description = "Existing account, caller proved ownership", body = Envelope<Registered>), (status = 409, description = "Username taken")))]
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
    responses((status = 201, description = "Registered", body = Envelope<UserSession>), (status = 409, description = "Username taken")))]
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
    responses((status = 200, description = "Logged in", body = Envelope<UserSession>), (status = 401, description = "Bad credentials")))]
pub async fn login(
    State(state): State<AppState>,
    JsonBody(b): JsonBody<LoginBody>,
) -> ApiResult<Response> {
    let session = state.service.login(&b.username, &b.password).await?;
    Ok(ok(user_session_json(&session)))
}

#[utoipa::path(get, path = "/api/im/me", responses((status = 200, description = "The caller's account and stats", body = Envelope<MeData>)))]
pub async fn me(State(state): State<AppState>, Auth(user): Auth) -> ApiResult<Response> {
    let s = state.service.stats(&user).await?;
    Ok(ok(MeData {
        user: render::user(&user),
        stats: Stats {
            conversation_count: s.conversation_count,
            direct_count: s.direct_count,
            group_count: s.group_count,
            contact_count: s.contact_count,
            messages_sent: s.messages_sent,
            unread_count: s.unread_count,
        },
        bindings: Vec::new(),
        credits: None,
    }))
}

#[utoipa::path(patch, path = "/api/im/me", request_body = ProfileBody, responses((status = 200, description = "Updated profile", body = Envelope<UserView>)))]
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

#[utoipa::path(delete, path = "/api/im/me", responses((status = 200, description = "Account deactivated", body = Envelope<AccountDeleted>)))]
pub async fn delete_me(
    State(state): State<AppState>,
    Auth(user): Auth,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    state.service.delete_account(&user).await?;
    Ok(ok(AccountDeleted {
        deleted: true,
        user_id: user.id,
    }))
}

#[utoipa::path(post, path = "/api/im/token/refresh", responses((status = 200, description = "A new token", body = Envelope<Refreshed>), (status = 401, description = "Unknown token")))]
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    let token = token_from(&headers, &uri).ok_or_else(|| ApiError(Error::unauthorized()))?;
    let s = state.service.refresh_token(&token).await?;
    Ok(ok(Refreshed {
        expires_in: expires_in(s.lifetime_ms),
        expires_at: imsync_core::time::rfc3339(s.expires_at),
        token: s.token,
    }))
}

#[utoipa::path(post, path = "/api/im/logout", responses((status = 200, description = "The token used no longer authenticates; its realtime connections end", body = Envelope<LoggedOut>), (status = 401, description = "Unknown token")))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    let token = token_from(&headers, &uri).ok_or_else(|| ApiError(Error::unauthorized()))?;
    state.service.authenticate(&token).await?;
    state.service.logout(&token).await?;
    Ok(ok(LoggedOut { logged_out: true }))
}

#[utoipa::path(get, path = "/api/im/health", responses((status = 200, description = "Service is up", body = Envelope<Health>)))]
pub async fn health(State(state): State<AppState>) -> Response {
    ok(Health {
        status: "ok",
        service: "imsync",
        version: env!("CARGO_PKG_VERSION"),
        storage: state.service.store().description().to_string(),
    })
}
