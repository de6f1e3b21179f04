//! Wire frames of the realtime endpoints, rendered once per event and shared by connections.

use imsync_core::event::EventKind;
use imsync_core::model::Event;
use imsync_service::hub::Delivered;
use serde_json::{json, Value};

/// How a frame shows an event: its Prismer-style type, and what its payload adds to the stored
/// one. A kind this version does not know goes out as a conversation change.
enum Shape {
    /// The stored payload as it is.
    Plain(&'static str),
    /// Any other change of a conversation: `conversation.updated` with the kind as `change`.
    Change,
}

fn shape(kind: Option<EventKind>) -> Shape {
    use EventKind::*;
    match kind {
        Some(MessageNew) => Shape::Plain("message.new"),
        Some(MessageEdit) => Shape::Plain("message.edit"),
        Some(MessageDelete) => Shape::Plain("message.deleted"),
        Some(MessageReaction) => Shape::Plain("message.reaction"),
        Some(ParticipantAdd) => Shape::Plain("participant.joined"),
        Some(ParticipantRemove) => Shape::Plain("participant.left"),
        Some(MessageRead) => Shape::Plain("message.read"),
        Some(
            MessageHide
            | ConversationCreate
            | ConversationUpdate
            | ConversationArchive
            | ConversationUnarchive
            | ConversationRead
            | ConversationSettings
            | ConversationExtra
            | ConversationHide,
        )
        | None => Shape::Change,
    }
}

/// The frame's type and payload.
fn typed_frame(e: &Event) -> (&'static str, Value) {
    let mut p = e.data.value().clone();
    match shape(e.event_kind()) {
        Shape::Plain(t) => (t, p),
        Shape::Change => {
            p["change"] = json!(e.kind);
            if p.get("conversationId").is_none() {
                p["conversationId"] = json!(e.conversation_id);
            }
            ("conversation.updated", p)
        }
    }
}

/// `[typed frame, sync frame]` of an event.
pub fn render(d: &Delivered) -> &[String] {
    d.rendered.get_or_init(|| {
        let e = &d.event;
        let (kind, payload) = typed_frame(e);
        vec![
            json!({
                "type": kind,
                "payload": payload,
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
