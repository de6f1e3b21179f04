//! Wire frames of the realtime endpoints, rendered once per event and shared by connections.

use imsync_core::event::EventKind;
use imsync_core::model::Event;
use imsync_service::hub::Delivered;
use serde_json::{json, Value};

/// The Prismer-style frame type of an event; a kind this version does not know goes out as a
/// conversation change.
fn frame_type(kind: Option<EventKind>) -> &'static str {
    use EventKind::*;
    match kind {
        Some(MessageNew) => "message.new",
        Some(MessageEdit) => "message.edit",
        Some(MessageDelete) => "message.deleted",
        Some(MessageReaction) => "message.reaction",
        Some(ConversationRead) => "message.read",
        Some(ParticipantAdd) => "participant.joined",
        Some(ParticipantRemove) => "participant.left",
        Some(
            MessageHide
            | ConversationCreate
            | ConversationUpdate
            | ConversationArchive
            | ConversationUnarchive
            | ConversationSettings
            | ConversationExtra
            | ConversationHide,
        )
        | None => "conversation.updated",
    }
}

/// The frame's payload: the stored one, with what the frame type adds.
fn payload(e: &Event, kind: Option<EventKind>) -> Value {
    use EventKind::*;
    let mut p = e.data.value().clone();
    match kind {
        Some(ConversationRead) => {
            p["readBy"] = p.get("userId").cloned().unwrap_or(Value::Null);
        }
        Some(
            MessageNew | MessageEdit | MessageDelete | MessageReaction | ParticipantAdd
            | ParticipantRemove,
        ) => {}
        Some(
            MessageHide
            | ConversationCreate
            | ConversationUpdate
            | ConversationArchive
            | ConversationUnarchive
            | ConversationSettings
            | ConversationExtra
            | ConversationHide,
        )
        | None => {
            p["change"] = json!(e.kind);
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
        let kind = e.event_kind();
        vec![
            json!({
                "type": frame_type(kind),
                "payload": payload(e, kind),
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
