use super::error::{bad, ok_status, TsddAuth, TsddJson, TsddResult};
use super::{channel, message_id, render};
use crate::app::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
pub struct SyncBody {
    channel_id: String,
    channel_type: i64,
    #[serde(default)]
    seq: i64,
    #[serde(default)]
    limit: i64,
}

/// `POST /v1/reaction/sync`: rows after `seq` ascending, or the newest descending for `seq<=0`.
pub async fn sync(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<SyncBody>,
) -> TsddResult<Response> {
    let ch = channel(&b.channel_id, b.channel_type)?;
    let (rows, names) = state
        .service
        .channel_reactions(&me, ch.clone(), b.seq, b.limit)
        .await?;
    let out: Vec<Value> = rows
        .iter()
        .map(|r| render::reaction_row(r, &ch, &names))
        .collect();
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
pub struct ToggleBody {
    #[serde(deserialize_with = "message_id")]
    message_id: i64,
    channel_id: String,
    channel_type: i64,
    emoji: String,
}

/// `POST /v1/reactions`: toggles the caller's (emoji) reaction on a message.
pub async fn toggle(
    State(state): State<AppState>,
    TsddAuth(me): TsddAuth,
    TsddJson(b): TsddJson<ToggleBody>,
) -> TsddResult<Response> {
    let ch = channel(&b.channel_id, b.channel_type)?;
    if b.emoji.trim().is_empty() {
        return Err(bad("emoji不能为空！"));
    }
    state
        .service
        .toggle_reaction(&me, ch, b.message_id, b.emoji)
        .await?;
    Ok(ok_status())
}
