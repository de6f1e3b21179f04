//! `chat.syncMessages` and `chat.syncThreadMessages` (docs/rocketchat.md, "Sync").
//!
//! Validation runs in Rocket.Chat's order, room access included, so each bad request gets the
//! error Rocket.Chat gives. Cursor mode reads `count + 1` rows of one side of the room's change
//! feed from the cursor and computes `next`/`previous` from that raw result exactly as
//! Rocket.Chat does (docs/rocketchat.md, "Cursor mode"), before the extra row is dropped.
//! Because `_updatedAt` and `_deletedAt` are strictly increasing within a room and both sides
//! filter and sort on the field their cursor is built from, following the cursors visits every
//! change exactly once.

use super::auth::RcAuth;
use super::chat::{parse_sort, thread_error, threads_disabled};
use super::error::{RcError, RcResult};
use super::params::{check, js_date_parse, js_parse_int_ms, nullable, query_object, req, Ty};
use super::{render, success};
use crate::app::AppState;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use imsync_core::model::Message;
use imsync_core::ErrorCode;
use imsync_service::{ChangeSet, MessageView};
use serde_json::{json, Value};

const SYNC_PROPS: &[super::params::Prop] = &[
    req("roomId", Ty::Str),
    nullable("lastUpdate", Ty::Str),
    nullable("count", Ty::Num),
    nullable("next", Ty::Str),
    nullable("previous", Ty::Str),
    nullable("type", Ty::Enum(&["UPDATED", "DELETED"])),
];

const THREAD_PROPS: &[super::params::Prop] = &[
    req("tmid", Ty::NonEmptyStr),
    req("updatedSince", Ty::IsoDateTime),
    nullable("count", Ty::Num),
    nullable("offset", Ty::Num),
    nullable("sort", Ty::Str),
];

const DEFAULT_COUNT: usize = 20;

/// Whether a message shows among a room's updates rather than in its trash.
pub fn visible_in_updates(m: &Message) -> bool {
    m.deleted_at.is_none() || render::is_removed_parent(m)
}

fn param_required(msg: &str) -> RcError {
    RcError::meteor("error-param-required", msg)
}

/// Rocket.Chat's `next` and `previous` cursors of a raw cursor-mode result `r` (up to
/// `count + 1` cursor values in result order), before the extra item is dropped.
pub fn cursors(r: &[i64], count: usize, next: bool, previous: bool) -> (Option<i64>, Option<i64>) {
    let len = r.len();
    if len == 0 {
        return (None, None);
    }
    let next_cursor = if previous {
        Some(r[0])
    } else if next && len <= count {
        None
    } else if next {
        Some(r[len - 2])
    } else {
        Some(r[len - 1])
    };
    let previous_cursor = if next {
        Some(r[0])
    } else if previous && len <= count {
        None
    } else if previous {
        Some(r[len - 2])
    } else {
        Some(r[0])
    };
    (next_cursor, previous_cursor)
}

fn parse_cursor(raw: &str) -> RcResult<i64> {
    js_parse_int_ms(raw).ok_or_else(|| RcError::meteor("error-invalid-cursor", "Invalid Date"))
}

fn present(q: &serde_json::Map<String, Value>, k: &str) -> bool {
    match q.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => true,
    }
}

/// `GET /api/v1/chat.syncMessages?roomId=&(lastUpdate= | type=&(next= | previous=)&count=)`.
pub async fn sync_messages(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query_object(uri.query())?;
    let q = check(&q, SYNC_PROPS, true).map_err(RcError::invalid_params)?;
    let room_id = q.get("roomId").and_then(Value::as_str).unwrap_or_default();
    if room_id.is_empty() {
        return Err(param_required(
            "The required \"roomId\" query param is missing",
        ));
    }
    let last_update = q
        .get("lastUpdate")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let kind = q
        .get("type")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if last_update.is_none() && kind.is_none() {
        return Err(param_required(
            "The \"type\" or \"lastUpdate\" parameters must be provided",
        ));
    }
    let since = match last_update {
        Some(s) => Some(js_date_parse(s).ok_or_else(|| {
            RcError::meteor(
                "error-lastUpdate-param-invalid",
                "The \"lastUpdate\" query parameter must be a valid date",
            )
        })?),
        None => None,
    };
    state
        .service
        .readable_room(&me, room_id)
        .await
        .map_err(|e| match e.code {
            ErrorCode::NotFound | ErrorCode::NotParticipant | ErrorCode::Forbidden => {
                RcError::meteor_with(
                    "error-not-allowed",
                    "Not allowed",
                    json!({ "method": "messages/get" }),
                )
            }
            _ => e.into(),
        })?;
    let (has_next, has_previous) = (present(&q, "next"), present(&q, "previous"));
    if (has_next || has_previous) && kind.is_none() {
        return Err(RcError::meteor(
            "error-type-param-required",
            "The \"type\" parameter is required when using the \"next\" or \"previous\" parameters",
        ));
    }
    if has_next && has_previous {
        return Err(RcError::meteor(
            "error-cursor-conflict",
            "You cannot provide both \"next\" and \"previous\" parameters",
        ));
    }
    if (has_next || has_previous) && since.is_some() {
        return Err(RcError::meteor(
            "error-cursor-and-lastUpdate-conflict",
            "The attributes \"next\", \"previous\" and \"lastUpdate\" cannot be used together",
        ));
    }
    let str_param = |k: &str| q.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let next = str_param("next").map(parse_cursor).transpose()?;
    let previous = str_param("previous").map(parse_cursor).transpose()?;

    if let Some(since) = since {
        let (updated, deleted) = state
            .service
            .room_changes_since(&me, room_id, since)
            .await?;
        return Ok(success(json!({
            "result": {
                "updated": updated.iter().map(render::message).collect::<Vec<_>>(),
                "deleted": deleted.iter().map(render::deleted_entry).collect::<Vec<_>>(),
            }
        })));
    }
    if next.is_none() && previous.is_none() {
        // `type` alone: Rocket.Chat answers from channel history, which has no `updated` key.
        return Ok(success(
            json!({ "result": { "updated": [], "deleted": [] } }),
        ));
    }
    let count = match q.get("count").and_then(Value::as_f64) {
        Some(n) if n >= 1.0 => n as usize,
        _ => DEFAULT_COUNT,
    };
    let set = match kind {
        Some("DELETED") => ChangeSet::Deleted,
        _ => ChangeSet::Updated,
    };
    let limit = i64::try_from(count)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1);
    let mut raw: Vec<MessageView> = state
        .service
        .room_changes_page(&me, room_id, set, next, previous, limit)
        .await?;
    let stamps: Vec<i64> = raw.iter().map(|v| v.message.updated_at).collect();
    let (next_cursor, previous_cursor) =
        cursors(&stamps, count, next.is_some(), previous.is_some());
    raw.truncate(count);
    let (updated, deleted): (Vec<Value>, Vec<Value>) = match set {
        ChangeSet::Updated => (raw.iter().map(render::message).collect(), Vec::new()),
        ChangeSet::Deleted => (
            Vec::new(),
            raw.iter()
                .map(|v| render::deleted_entry(&v.message))
                .collect(),
        ),
    };
    Ok(success(json!({
        "result": {
            "updated": updated,
            "deleted": deleted,
            "cursor": {
                "next": next_cursor.map(|c| c.to_string()),
                "previous": previous_cursor.map(|c| c.to_string()),
            },
        }
    })))
}

fn sort_views(list: &mut [MessageView], sort: &Option<(String, bool)>, removed: bool) {
    let key = |v: &MessageView| match sort.as_ref().map(|(k, _)| k.as_str()) {
        Some("ts") => v.message.created_at,
        Some("_deletedAt") if removed => render::deleted_at(&v.message),
        _ => v.message.updated_at,
    };
    list.sort_by_key(key);
    if sort.as_ref().is_some_and(|(_, desc)| *desc) {
        list.reverse();
    }
}

/// `GET /api/v1/chat.syncThreadMessages?tmid=&updatedSince=&sort=`.
pub async fn sync_thread_messages(
    State(state): State<AppState>,
    RcAuth(me, _): RcAuth,
    uri: Uri,
) -> RcResult<Response> {
    let q = query_object(uri.query())?;
    let q = check(&q, THREAD_PROPS, true).map_err(RcError::invalid_params)?;
    let sort = parse_sort(q.get("sort").and_then(Value::as_str))?;
    if !state.service.config().threads_enabled {
        return Err(threads_disabled());
    }
    let since = q
        .get("updatedSince")
        .and_then(Value::as_str)
        .and_then(js_date_parse)
        .ok_or_else(|| {
            RcError::meteor(
                "error-updatedSince-param-invalid",
                "The \"updatedSince\" query parameter must be a valid date.",
            )
        })?;
    let tmid = q.get("tmid").and_then(Value::as_str).unwrap_or_default();
    let mut changes = state
        .service
        .thread_changes(&me, tmid, since)
        .await
        .map_err(thread_error)?;
    sort_views(&mut changes.update, &sort, false);
    sort_views(&mut changes.remove, &sort, true);
    Ok(success(json!({
        "messages": {
            "update": changes.update.iter().map(render::message).collect::<Vec<_>>(),
            "remove": changes.remove.iter().map(render::trash_doc).collect::<Vec<_>>(),
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::cursors;

    #[test]
    fn cursors_follow_rocket_chat() {
        // next mode, a full page plus one: next is the last kept item, previous the first.
        assert_eq!(cursors(&[1, 2, 3], 2, true, false), (Some(2), Some(1)));
        // next mode, the last page: no next.
        assert_eq!(cursors(&[3], 2, true, false), (None, Some(3)));
        assert_eq!(cursors(&[], 2, true, false), (None, None));
        // previous mode (descending): next is the newest, previous the oldest kept.
        assert_eq!(cursors(&[9, 8, 7], 2, false, true), (Some(9), Some(8)));
        assert_eq!(cursors(&[9, 8], 2, false, true), (Some(9), None));
    }
}
