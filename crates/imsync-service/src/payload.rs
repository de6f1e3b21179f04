//! The payloads of events (typed in `imsync_core::event`), built from the domain types. They are
//! written into the event log at append time, so sync replays exactly what happened. A new
//! message is rendered through the borrowing [`MessageJson`] instead of the owned
//! `MessageBody`: a send renders it once for its event and its response without copying its
//! fields, and a test holds the two to the same text.

use imsync_core::event::{
    ConversationBody, MemberBody, MessageDelete, MessageEdit, ParticipantAdd,
};
use imsync_core::model::{Conversation, Message, User};
use imsync_core::time::rfc3339;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
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
        reply_count: (m.reply_count > 0).then_some(m.reply_count),
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

pub fn message_edit(m: &Message) -> MessageEdit {
    MessageEdit {
        content: m.content.clone(),
        conversation_id: m.conversation_id.clone(),
        created_seq: m.event_seq,
        edited_at: m.edited_at.map(rfc3339),
        edited_by: m.edited_by.clone(),
        id: m.id.clone(),
        metadata: m.metadata.clone(),
        kind: m.kind.clone(),
        updated_at: rfc3339(m.updated_at),
    }
}

pub fn message_delete(m: &Message) -> MessageDelete {
    MessageDelete {
        conversation_id: m.conversation_id.clone(),
        created_seq: m.event_seq,
        id: m.id.clone(),
    }
}

/// A member as events and responses show it.
pub fn member(u: &User, role: &str) -> MemberBody {
    MemberBody {
        display_name: u.display_name.clone(),
        role: role.to_owned(),
        user_id: u.id.clone(),
        user_role: u.role.as_str().to_owned(),
        username: u.username.clone(),
    }
}

pub fn conversation(c: &Conversation, members: Option<Vec<MemberBody>>) -> ConversationBody {
    ConversationBody {
        // Archive is each member's own state, carried by their private events, never by a
        // snapshot that others see.
        archived: false,
        created_at: rfc3339(c.created_at),
        created_by: c.created_by.clone(),
        description: c.description.clone(),
        id: c.id.clone(),
        last_message_at: c.last_message_at.map(rfc3339),
        members,
        metadata: c.metadata.clone(),
        title: c.title.clone(),
        kind: c.kind.as_str().to_owned(),
        updated_at: rfc3339(c.updated_at),
    }
}

pub fn participant(conv_id: &str, u: &User, role: &str) -> ParticipantAdd {
    ParticipantAdd {
        conversation_id: conv_id.to_owned(),
        display_name: u.display_name.clone(),
        role: role.to_owned(),
        user_id: u.id.clone(),
        username: u.username.clone(),
    }
}

/// User ids by emoji, each list in the order the reactions were made.
pub fn reactions(rs: &[imsync_core::model::Reaction]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rs {
        map.entry(r.emoji.clone())
            .or_default()
            .push(r.user_id.clone());
    }
    map
}

/// A value as JSON, for responses that embed a payload type.
pub fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            reply_count: 0,
            last_reply_at: None,
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

    /// The typed payloads write the very text the log held before they existed (built then
    /// with `json!`, whose objects sort their keys), so old and new rows read alike.
    #[test]
    fn typed_payloads_keep_the_stored_text() {
        let mut m = message("hi", json!({"k": 1}));
        (m.edited_at, m.edited_by, m.event_seq) = (Some(5), Some("u2".into()), 9);
        assert_eq!(
            to_value(&message_edit(&m)).to_string(),
            json!({
                "id": m.id, "conversationId": m.conversation_id, "content": m.content,
                "type": m.kind, "metadata": m.metadata, "editedAt": m.edited_at.map(rfc3339),
                "editedBy": m.edited_by, "updatedAt": rfc3339(m.updated_at),
                "createdSeq": m.event_seq,
            })
            .to_string()
        );
        assert_eq!(
            imsync_core::event::EventData::MessageEdit(message_edit(&m)).to_json(),
            to_value(&message_edit(&m)).to_string()
        );
        assert_eq!(
            to_value(&message_delete(&m)).to_string(),
            json!({"id": m.id, "conversationId": m.conversation_id, "createdSeq": 9}).to_string()
        );
        let u = User {
            id: "u1".into(),
            username: "ann".into(),
            display_name: "Ann".into(),
            role: imsync_core::model::UserRole::Agent,
            agent_type: None,
            avatar_url: None,
            bio: None,
            metadata: json!({}),
            has_password: false,
            created_at: 0,
            updated_at: 0,
        };
        let member_json = json!({
            "userId": "u1", "username": "ann", "displayName": "Ann", "role": "owner",
            "userRole": "agent",
        });
        assert_eq!(to_value(&member(&u, "owner")), member_json);
        assert_eq!(
            to_value(&participant("c1", &u, "member")).to_string(),
            json!({"conversationId": "c1", "userId": "u1", "username": "ann",
                   "displayName": "Ann", "role": "member"})
            .to_string()
        );
        let conv = Conversation {
            id: "c1".into(),
            kind: imsync_core::model::ConversationKind::Group,
            public: false,
            title: Some("t".into()),
            description: None,
            metadata: json!({}),
            created_by: "u1".into(),
            created_at: 1,
            updated_at: 2,
            last_msg_seq: 0,
            last_event_seq: 0,
            last_message_at: None,
            live_msg_count: 0,
            last_touch_ms: 0,
        };
        for members in [None, Some(vec![member(&u, "owner")])] {
            let mut old = json!({
                "id": "c1", "type": "group", "title": "t", "description": null,
                "metadata": {}, "createdBy": "u1", "createdAt": rfc3339(1),
                "updatedAt": rfc3339(2), "archived": false, "lastMessageAt": null,
            });
            if members.is_some() {
                old["members"] = json!([member_json.clone()]);
            }
            assert_eq!(
                to_value(&conversation(&conv, members)).to_string(),
                old.to_string()
            );
        }
    }

    /// A new message's event text reads back as the typed `message.new` and writes the same.
    #[test]
    fn message_text_is_the_typed_message_body() {
        use imsync_core::event::EventData;
        for edited in [false, true] {
            let mut m = message("body", serde_json::json!({"a": [1, 2]}));
            if edited {
                (m.edited_at, m.reply_count, m.deleted_at) = (Some(3), 2, Some(4));
            }
            let text = message_text(&m);
            let typed = EventData::parse("message.new", &text).expect("parses");
            assert_eq!(typed.to_json(), *text);
        }
    }
}
