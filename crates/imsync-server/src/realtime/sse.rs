//! `GET /sse?token=&since=` (Prismer frames as `data:` lines) and `GET /api/im/sync/stream`
//! (`event: sync` with `id: <seq>`, then `event: caught_up`, then live; `Last-Event-ID` resumes).

use super::{announce_presence, authenticated_frame, frames, Backlog, RealtimeQuery};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryParams;
use crate::metrics::{OpenConnection, Protocol};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use imsync_core::model::User;
use imsync_core::{Error, Seq};
use imsync_service::hub::{Delivery, SessionKey};
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;

const HEARTBEAT: Duration = Duration::from_secs(30);

async fn authenticate(state: &AppState, q: &RealtimeQuery) -> ApiResult<(User, SessionKey)> {
    let token = q
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError(Error::new(
                imsync_core::ErrorCode::Unauthorized,
                "Missing token",
            ))
        })?;
    Ok(state.service.authenticate_session(token).await?)
}

/// The stream of `rx`'s events, counted as an open connection until hyper drops it (when the
/// client goes away, or the producer ends the stream).
fn stream_response(rx: mpsc::Receiver<SseEvent>, keep_alive: bool) -> Response {
    let open = OpenConnection::new(Protocol::NativeSse);
    let stream = futures_util::stream::unfold((rx, open), |(mut rx, open)| async move {
        rx.recv()
            .await
            .map(|e| (Ok::<_, Infallible>(e), (rx, open)))
    });
    let sse = Sse::new(stream);
    if keep_alive {
        sse.keep_alive(KeepAlive::new().interval(HEARTBEAT).text(" heartbeat"))
            .into_response()
    } else {
        sse.into_response()
    }
}

pub async fn frames(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<RealtimeQuery>,
) -> ApiResult<Response> {
    let since = q.since()?;
    let (user, session) = authenticate(&state, &q).await?;
    let (tx, rx) = mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let service = state.service.clone();
        let _running = service.hub().track();
        let (mut sub, first) = service.hub().subscribe(&user.id, Some(session));
        let data = |s: String| SseEvent::default().data(s);
        if tx.send(data(authenticated_frame(&user))).await.is_err() {
            return;
        }
        if first {
            announce_presence(&service, &user, "online").await;
        }
        let mut last_sent = since.unwrap_or(0);
        if let Some(since) = since {
            let mut backlog = Backlog::after(&service, &user, since);
            // A backlog that cannot be read ends the stream: the client resumes, with no gap.
            while let Ok(page) = backlog.next_page().await {
                let Some(events) = page else { break };
                for e in &events {
                    if tx.send(data(frames::sync_frame(e))).await.is_err() {
                        return;
                    }
                    last_sent = e.seq;
                }
            }
            if !backlog.finished() {
                return;
            }
        }
        while let Some(d) = sub.rx.recv().await {
            let sent = match d {
                Delivery::Event(d) => {
                    if d.event.seq <= last_sent {
                        continue;
                    }
                    last_sent = d.event.seq;
                    let r = frames::render(&d);
                    let ok = tx.send(data(r[0].clone())).await.is_ok();
                    ok && (since.is_none() || tx.send(data(r[1].clone())).await.is_ok())
                }
                Delivery::Ephemeral(f) => tx.send(data(f.to_string())).await.is_ok(),
            };
            if !sent {
                break;
            }
        }
        // A lagging subscription ends the stream; the client reconnects with `since`. One whose
        // session ended says so first, so that the client logs in again instead.
        if sub.revoked() {
            let frame = frames::error_frame("UNAUTHORIZED", "session ended", None);
            let _ = tx.send(data(frame)).await;
        }
        drop(sub);
        if !service.hub().presence(&user.id).0 {
            announce_presence(&service, &user, "offline").await;
        }
    });
    Ok(stream_response(rx, true))
}

pub async fn sync_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<RealtimeQuery>,
) -> ApiResult<Response> {
    // A browser reconnects with its old URL and the id it last saw: the header wins.
    // One that cannot be read is refused rather than ignored: ignoring it would replay
    // everything from 0.
    let bad_id = || ApiError(Error::param("Last-Event-ID must be a sequence number"));
    let last_event_id = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().map_err(|_| bad_id())?.trim()).filter(|v| !v.is_empty()),
        None => None,
    };
    let since: Seq = match last_event_id {
        Some(v) => v
            .parse::<Seq>()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(bad_id)?,
        None => q.since()?.unwrap_or(0),
    };
    let (user, session) = authenticate(&state, &q).await?;
    let (tx, rx) = mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let service = state.service.clone();
        let _running = service.hub().track();
        let (mut sub, _) = service.hub().subscribe(&user.id, Some(session));
        let sync_event = |e: &imsync_core::model::Event| {
            SseEvent::default()
                .event("sync")
                .id(e.seq.to_string())
                .data(crate::native::event_json(e).to_string())
        };
        let mut last_sent = since;
        let mut backlog = Backlog::after(&service, &user, since);
        loop {
            match backlog.next_page().await {
                Ok(Some(events)) => {
                    for e in &events {
                        if tx.send(sync_event(e)).await.is_err() {
                            return;
                        }
                        last_sent = e.seq;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        let caught_up = SseEvent::default()
            .event("caught_up")
            .data(json!({ "cursor": last_sent }).to_string());
        if tx.send(caught_up).await.is_err() {
            return;
        }
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.tick().await;
        loop {
            tokio::select! {
                d = sub.rx.recv() => match d {
                    Some(Delivery::Event(d)) => {
                        if d.event.seq <= last_sent {
                            continue;
                        }
                        last_sent = d.event.seq;
                        if tx.send(sync_event(&d.event)).await.is_err() {
                            break;
                        }
                    }
                    Some(Delivery::Ephemeral(_)) => {}
                    None => {
                        if sub.revoked() {
                            let ended = SseEvent::default()
                                .event("error")
                                .data(json!({ "code": "UNAUTHORIZED", "message": "session ended" }).to_string());
                            let _ = tx.send(ended).await;
                        }
                        break;
                    }
                },
                _ = beat.tick() => {
                    let hb = SseEvent::default().event("heartbeat").data("{}");
                    if tx.send(hb).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    Ok(stream_response(rx, false))
}
