//! A DDP client of Rocket.Chat's realtime API (`GET /websocket`), as a bot holds it: `connect`,
//! `login` with a resume token, one `stream-room-messages` subscription; then every `changed`
//! frame carrying a stamped message is timed, and the server's pings are answered.

use crate::ws::{self, find_stamp, Reading, Ws};
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Opens `/websocket`, logs in with `token` (any session token works for `resume`) and
/// subscribes to the messages of room `rid`; answers once the subscription is `ready`.
pub async fn subscribe(base: &str, token: &str, rid: &str) -> Result<Ws> {
    let mut ws = ws::open(&ws::ws_path(base, "/websocket")).await?;
    // DDP handles a connection's frames in order, so the three go out at once.
    let frames = [
        json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}),
        json!({"msg": "method", "method": "login", "id": "login",
               "params": [{"resume": token}]}),
        json!({"msg": "sub", "id": "room", "name": "stream-room-messages",
               "params": [rid, {"useCollection": false, "args": []}]}),
    ];
    for f in frames {
        ws.send(Message::text(f.to_string())).await?;
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout_at(until, ws.next())
            .await
            .context("DDP subscription not ready within 30 s")?;
        let text = match m {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => bail!("DDP connection closed while subscribing: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("DDP connection failed while subscribing: {e}"),
            None => bail!("DDP connection ended while subscribing"),
        };
        let v: Value = serde_json::from_str(text.as_str()).context("DDP frame is not JSON")?;
        match v["msg"].as_str().unwrap_or_default() {
            "ready" => return Ok(ws),
            "nosub" | "failed" | "error" => bail!("DDP subscription refused: {text}"),
            "result" if v.get("error").is_some() => bail!("DDP login refused: {text}"),
            "ping" => ws.send(Message::text(r#"{"msg":"pong"}"#)).await?,
            _ => {}
        }
    }
}

const CHANGED: &str = r#""msg":"changed""#;
const PING: &str = r#""msg":"ping""#;

/// DDP frames: a `changed` frame of a stamped message is timed; a ping is answered.
pub fn reading(m: Message) -> Reading {
    let Message::Text(t) = m else {
        return Reading::Ignored;
    };
    let t = t.as_str();
    if t.contains(CHANGED) {
        if let Some((at, origin)) = find_stamp(t) {
            return Reading::Timed(at, origin);
        }
    } else if t.contains(PING) {
        return Reading::Answer(Message::text(r#"{"msg":"pong"}"#));
    }
    Reading::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_frames_are_timed_and_pings_answered() {
        let content = ws::stamp('d', "x");
        let frame = format!(
            r#"{{"msg":"changed","collection":"stream-room-messages","id":"id","fields":{{"eventName":"r1","args":[{{"_id":"m","msg":"{content}"}}]}}}}"#
        );
        assert!(matches!(
            reading(Message::text(frame)),
            Reading::Timed(_, 'd')
        ));
        assert!(matches!(
            reading(Message::text(r#"{"msg":"ping"}"#)),
            Reading::Answer(_)
        ));
        assert!(matches!(
            reading(Message::text(r#"{"msg":"updated","methods":["1"]}"#)),
            Reading::Other
        ));
    }
}
