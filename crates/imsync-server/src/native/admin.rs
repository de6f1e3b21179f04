//! The admin API under `/api/im/admin`: account management for callers with the admin role
//! (403 `FORBIDDEN` for anyone else). Accounts are named in paths by id or username.

use super::{created, ok, ok_meta, Envelope, PagedEnvelope};
use crate::app::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{int_param, JsonBody, QueryParams, UnusedBody};
use axum::extract::{Path, State};
use axum::response::Response;
use imsync_core::time::rfc3339;
use imsync_core::Error;
use imsync_service::admin::AccountChange;
use imsync_service::{Account, NewAccount};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An account as an admin sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminUser {
    id: String,
    username: String,
    display_name: String,
    /// `human` or `agent`.
    role: &'static str,
    /// Whether the account may manage others.
    admin: bool,
    /// A disabled account cannot log in and has no sessions.
    disabled: bool,
    #[schema(required = true)]
    disabled_at: Option<String>,
    /// Whether it can log in with a password (token-only accounts cannot).
    has_password: bool,
    created_at: String,
}

fn view(a: &Account) -> AdminUser {
    AdminUser {
        id: a.user.id.clone(),
        username: a.user.username.clone(),
        display_name: a.user.display_name.clone(),
        role: a.user.role.as_str(),
        admin: a.admin,
        disabled: a.disabled_at.is_some(),
        disabled_at: a.disabled_at.map(rfc3339),
        has_password: a.user.has_password,
        created_at: rfc3339(a.user.created_at),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    offset: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Page {
    /// Live accounts in all.
    total: i64,
    limit: i64,
    offset: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateUserBody {
    username: String,
    password: String,
    display_name: Option<String>,
    /// `human` (the default) or `agent`.
    role: Option<String>,
    /// Give the new account the admin role.
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateUserBody {
    /// `true` disables the account (its sessions end), `false` enables it again.
    disabled: Option<bool>,
    /// Gives or takes the admin role.
    admin: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
pub struct ResetPasswordBody {
    password: String,
}

/// What ending sessions did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionsEnded {
    user: AdminUser,
    /// Sessions (tokens) that ended.
    sessions_ended: u64,
}

#[utoipa::path(get, path = "/api/im/admin/users", operation_id = "adminListUsers",
    params(("limit" = Option<i64>, Query, description = "1 to 1000, 100 by default"), ("offset" = Option<i64>, Query,)),
    responses((status = 200, description = "Live accounts, oldest first", body = PagedEnvelope<Vec<AdminUser>, Page>),
        (status = 403, description = "The caller is not an admin")))]
pub async fn list(
    State(state): State<AppState>,
    Auth(me): Auth,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Response> {
    state.service.require_admin(&me).await?;
    let limit = int_param("limit", q.limit.as_deref())?.unwrap_or(100);
    let offset = int_param("offset", q.offset.as_deref())?.unwrap_or(0);
    let (accounts, total) = state.service.accounts(offset, limit).await?;
    let list: Vec<AdminUser> = accounts.iter().map(view).collect();
    Ok(ok_meta(
        list,
        Page {
            total,
            limit,
            offset,
        },
    ))
}

#[utoipa::path(post, path = "/api/im/admin/users", operation_id = "adminCreateUser", request_body = CreateUserBody,
    responses((status = 201, description = "Created, also while registration is closed; the user logs in with the password", body = Envelope<AdminUser>),
        (status = 403, description = "The caller is not an admin"), (status = 409, description = "Username taken")))]
pub async fn create(
    State(state): State<AppState>,
    Auth(me): Auth,
    JsonBody(b): JsonBody<CreateUserBody>,
) -> ApiResult<Response> {
    state.service.require_admin(&me).await?;
    let account = state
        .service
        .create_account(
            NewAccount {
                username: b.username,
                display_name: b.display_name,
                role: b.role,
                password: Some(b.password),
                ..Default::default()
            },
            b.admin,
        )
        .await?;
    Ok(created(view(&account)))
}

#[utoipa::path(get, path = "/api/im/admin/users/{id}", operation_id = "adminGetUser", params(("id" = String, Path, description = "User id or username")),
    responses((status = 200, description = "The account", body = Envelope<AdminUser>),
        (status = 403, description = "The caller is not an admin"), (status = 404, description = "No such user")))]
pub async fn get(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    state.service.require_admin(&me).await?;
    Ok(ok(view(&state.service.account(&id).await?)))
}

#[utoipa::path(patch, path = "/api/im/admin/users/{id}", operation_id = "adminUpdateUser", params(("id" = String, Path, description = "User id or username")),
    request_body = UpdateUserBody,
    responses((status = 200, description = "The account as changed", body = Envelope<AdminUser>),
        (status = 403, description = "The caller is not an admin"), (status = 404, description = "No such user"),
        (status = 409, description = "It would leave no enabled admin")))]
pub async fn update(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<UpdateUserBody>,
) -> ApiResult<Response> {
    state.service.require_admin(&me).await?;
    if b.disabled.is_none() && b.admin.is_none() {
        return Err(Error::invalid("give disabled or admin").into());
    }
    let change = AccountChange {
        admin: b.admin,
        disabled: b.disabled,
    };
    let (account, _) = state.service.update_account(&id, change).await?;
    Ok(ok(view(&account)))
}

#[utoipa::path(post, path = "/api/im/admin/users/{id}/reset-password", operation_id = "adminResetPassword",
    params(("id" = String, Path, description = "User id or username")), request_body = ResetPasswordBody,
    responses((status = 200, description = "The new password is set and the account's sessions ended", body = Envelope<SessionsEnded>),
        (status = 403, description = "The caller is not an admin"), (status = 404, description = "No such user")))]
pub async fn reset_password(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ResetPasswordBody>,
) -> ApiResult<Response> {
    state.service.require_admin(&me).await?;
    let (account, ended) = state.service.reset_password(&id, b.password).await?;
    Ok(ok(SessionsEnded {
        user: view(&account),
        sessions_ended: ended,
    }))
}

#[utoipa::path(post, path = "/api/im/admin/users/{id}/logout", operation_id = "adminLogoutUser",
    params(("id" = String, Path, description = "User id or username")),
    responses((status = 200, description = "Every session of the account ended, on every face", body = Envelope<SessionsEnded>),
        (status = 403, description = "The caller is not an admin"), (status = 404, description = "No such user")))]
pub async fn logout(
    State(state): State<AppState>,
    Auth(me): Auth,
    Path(id): Path<String>,
    _body: UnusedBody<ApiError>,
) -> ApiResult<Response> {
    state.service.require_admin(&me).await?;
    let (account, ended) = state.service.end_sessions(&id).await?;
    Ok(ok(SessionsEnded {
        user: view(&account),
        sessions_ended: ended,
    }))
}
