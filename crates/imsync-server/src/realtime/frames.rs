//! Wire frames of the realtime endpoints, rendered once per event and shared by connections.

use imsync_core::model::{event_type as ev, Event};
use imsync_service::hub::Delivered;
use serde_json::{json, Value};

/// The Prismer-style frame type of an event.
fn frame_type(kind: &str) -> &'static str {
    match kind {
        ev::MESSAGE_NEW => "message.new",
        ev::MESSAGE_EDIT => "message.edit",
        ev::MESSAGE_DELETE => "message.deleted",
        ev::MESSAGE_REACTION => "message.reaction",
        ev::CONVERSATION_READ => "message.read",
        ev::PARTICIPANT_ADD => "participant.joined",
        ev::PARTICIPANT_REMOVE => "participant.left",
        _ => "conversation.updated",
    }
}

fn payload(e: &Event) -> Value {
    let mut p = e.data.value().clone();
    match e.kind.as_str() {
        ev::CONVERSATION_READ => {
            p["readBy"] = p.get("userId").cloned().unwrap_or(Value::Null);
        }
        ev::MESSAGE_NEW
        | ev::MESSAGE_EDIT
        | ev::MESSAGE_DELETE
        | ev::MESSAGE_REACTION
        | ev::PARTICIPANT_ADD
        | ev::PARTICIPANT_REMOVE => {}
        other => {
            p["change"] = json!(other);
            if p.get("conversationId").is_none() {
                p["conversationId"] = json!(e.conversation_id);
            }
        }
    }
    p
}

/// `[typed frame, sync frame]` of an event.
pub fn render(d: &Delivered) -> &[String] {
    d.rendered.get_or_init(|| {
        let e = &d.event;
        vec![
            json!({
                "type": frame_type(&e.kind),
                "payload": payload(e),
                "seq": e.seq,
                "timestamp": e.at,
            })
            .to_string(),
            sync_frame(e),
        ]
    })
}

pub fn sync_frame(e: &Event) -> String {
    json!({ "type": "sync", "payload": crate::native::event_json(e), "seq": e.seq }).to_string()
}

pub fn error_frame(code: &str, message: &str, request_id: Option<&Value>) -> String {
    let mut f = json!({ "type": "error", "payload": { "code": code, "message": message } });
    if let Some(r) = request_id {
        f["requestId"] = r.clone();
    }
    f.to_string()
}
