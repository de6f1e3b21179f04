//! The JSON payloads of events, in the shapes of the native face (specs/native.md §6, §9). They
//! are written into the event log at append time, so sync replays exactly what happened.

use imsync_core::model::{Conversation, Message, User};
use imsync_core::time::rfc3339;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// A message as events and responses carry it, serialized straight from the message: a send
/// renders it once as text for both its event and its response.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageJson<'a> {
    id: &'a str,
    conversation_id: &'a str,
    sender_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    content: &'a str,
    metadata: &'a Value,
    parent_id: Option<&'a str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    quoted_message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    edited_at: Option<String>,
    /// Present (possibly null) exactly when `editedAt` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    edited_by: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_count: Option<i64>,
    // Last, so that a send can render the rest before the writer hands out these (see `Draft`).
    seq: i64,
    created_at: String,
    updated_at: String,
}

pub fn message_json(m: &Message) -> MessageJson<'_> {
    MessageJson {
        id: &m.id,
        conversation_id: &m.conversation_id,
        sender_id: &m.sender_id,
        kind: &m.kind,
        content: &m.content,
        metadata: &m.metadata,
        parent_id: m.parent_id.as_deref(),
        status: "sent",
        quoted_message_id: m.quoted_id.as_deref(),
        edited_at: m.edited_at.map(rfc3339),
        edited_by: m.edited_at.map(|_| m.edited_by.as_deref()),
        deleted_at: m.deleted_at.map(rfc3339),
        reply_count: (m.tcount > 0).then_some(m.tcount),
        seq: m.msg_seq,
        created_at: rfc3339(m.created_at),
        updated_at: rfc3339(m.updated_at),
    }
}

pub fn message(m: &Message) -> Value {
    serde_json::to_value(message_json(m)).unwrap_or(Value::Null)
}

/// [`message`] as JSON text, made straight from the message.
pub fn message_text(m: &Message) -> Arc<str> {
    serde_json::to_string(&message_json(m))
        .unwrap_or_else(|_| "null".to_owned())
        .into()
}

/// A message's [`message_text`] but for its seq and stamps, which a send learns only in the
/// writer: the rest is rendered before, off the writer's thread.
#[derive(Debug, Clone)]
pub struct Draft(String);

const SEQ_FIELD: &str = ",\"seq\":";

impl Draft {
    pub fn of(m: &Message) -> Draft {
        let mut text = serde_json::to_string(&message_json(m)).unwrap_or_default();
        // The fields are last, and a string value cannot hold this unescaped; a metadata key
        // can, but comes before them.
        let cut = text.rfind(SEQ_FIELD).unwrap_or(text.len());
        text.truncate(cut);
        Draft(text)
    }

    /// The text [`message_text`] renders for the drafted message at `seq`, created (and last
    /// updated) at `at`.
    pub fn finish(&self, seq: i64, at: i64) -> Arc<str> {
        let stamp = rfc3339(at);
        format!(
            "{}{SEQ_FIELD}{seq},\"createdAt\":\"{stamp}\",\"updatedAt\":\"{stamp}\"}}",
            self.0
        )
        .into()
    }
}

pub fn message_edit(m: &Message) -> Value {
    json!({
        "id": m.id,
        "conversationId": m.conversation_id,
        "content": m.content,
        "type": m.kind,
        "metadata": m.metadata,
        "editedAt": m.edited_at.map(rfc3339),
        "editedBy": m.edited_by,
        "updatedAt": rfc3339(m.updated_at),
        "createdSeq": m.event_seq,
    })
}

pub fn message_delete(m: &Message) -> Value {
    json!({ "id": m.id, "conversationId": m.conversation_id, "createdSeq": m.event_seq })
}

/// A member as events and responses show it.
pub fn member(u: &User, role: &str) -> Value {
    json!({
        "userId": u.id,
        "username": u.username,
        "displayName": u.display_name,
        "role": role,
        "userRole": u.role.as_str(),
    })
}

pub fn conversation(c: &Conversation, members: Option<Vec<Value>>) -> Value {
    let mut v = json!({
        "id": c.id,
        "type": c.kind.as_str(),
        "title": c.title,
        "description": c.description,
        "metadata": c.metadata,
        "createdBy": c.created_by,
        "createdAt": rfc3339(c.created_at),
        "updatedAt": rfc3339(c.updated_at),
        "archived": c.archived,
        "lastMessageAt": c.last_message_at.map(rfc3339),
    });
    if let Some(members) = members {
        v["members"] = Value::Array(members);
    }
    v
}

pub fn participant(conv_id: &str, u: &User, role: &str) -> Value {
    json!({
        "conversationId": conv_id,
        "userId": u.id,
        "username": u.username,
        "displayName": u.display_name,
        "role": role,
    })
}

/// `{"<emoji>": [userIds]}` in the order reactions were made.
pub fn reactions(rs: &[imsync_core::model::Reaction]) -> Value {
    let mut map = Map::new();
    for r in rs {
        map.entry(r.emoji.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("array")
            .push(json!(r.user_id));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content: &str, metadata: Value) -> Message {
        Message {
            id: "m1".into(),
            conversation_id: "c1".into(),
            msg_seq: 0,
            event_seq: 0,
            sender_id: "u1".into(),
            kind: "text".into(),
            content: content.into(),
            metadata,
            parent_id: Some("p1".into()),
            quoted_id: Some("q1".into()),
            created_at: 0,
            updated_at: 0,
            edited_at: None,
            edited_by: None,
            deleted_at: None,
            revoked: false,
            tcount: 0,
            tlm: None,
            version: 0,
        }
    }

    #[test]
    fn a_finished_draft_is_the_message_text() {
        for (content, metadata) in [
            ("plain", json!({})),
            (
                r#"quotes " and ,"seq":1 inside"#,
                json!({"seq": 7, "x": {"seq": 8}}),
            ),
            ("unicode ✓ \n tab\t", json!({"a": 1, "seq": "s"})),
        ] {
            let mut m = message(content, metadata);
            let draft = Draft::of(&m);
            (m.msg_seq, m.created_at, m.updated_at) = (42, 1_714_557_600_123, 1_714_557_600_123);
            assert_eq!(
                &*draft.finish(42, 1_714_557_600_123),
                &*message_text(&m),
                "{content}"
            );
        }
    }
}
