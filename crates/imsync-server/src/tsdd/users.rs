use super::channel;
use super::error::{bad, ok_status, TsddAuth, TsddJson, TsddResult};
use crate::app::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use imsync_core::ErrorCode;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// `POST /v1/user/login`: the password accounts of `/api/im/users/register`.
pub async fn login(
    State(state): State<AppState>,
    TsddJson(b): TsddJson<LoginBody>,
) -> TsddResult<Response> {
    if b.username.trim().is_empty() || b.password.is_empty() {
        return Err(bad("用户名或密码不能为空！"));
    }
    let s = match state.service.login(b.username.trim(), &b.password).await {
        Ok(s) => s,
        Err(e) if e.code == ErrorCode::InvalidCredentials => {
            return Err(bad("用户名或密码错误！"));
        }
        Err(e) => return Err(e.into()),
    };
    let u = &s.user;
    Ok(Json(json!({
        "uid": u.id,
        "token": s.token,
        "im_token": s.token,
        "name": u.display_name,
        "username": u.username,
        "avatar": u.avatar_url,
        "short_no": u.username,
        "sex": 0,
        "category": "",
        "app_id": "imsync",
        "setting": {},
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct SettingBody {
    top: Option<i64>,
    mute: Option<i64>,
}

async fn setting(
    state: AppState,
    me: imsync_core::model::User,
    id: &str,
    channel_type: i64,
    b: SettingBody,
) -> TsddResult<Response> {
    if b.top.is_none() && b.mute.is_none() {
        return Err(bad("top or mute is required"));
    }
    let ch = channel(id, channel_type)?;
    state
        .service
        .set_channel_settings(&me, ch, b.top.map(|v| v != 0), b.mute.map(|v| v != 0))
        .await?;
    Ok(ok_status())
}

/// `PUT /v1/users/:uid/setting` with `{top, mute}`: the caller's pin/mute of a person channel.
pub async fn user_setting(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    Path(uid): Path<String>,
    TsddJson(b): TsddJson<SettingBody>,
) -> TsddResult<Response> {
    setting(state, me, &uid, 1, b).await
}

/// `PUT /v1/groups/:group_no/setting` with `{top, mute}`.
pub async fn group_setting(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    Path(group_no): Path<String>,
    TsddJson(b): TsddJson<SettingBody>,
) -> TsddResult<Response> {
    setting(state, me, &group_no, 2, b).await
}
