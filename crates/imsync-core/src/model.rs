//! Domain records as the store keeps them. Faces render these in their own wire formats.

use crate::{ConversationId, MessageId, Seq, UserId};
use serde_json::Value;
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRole {
    Human,
    Agent,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Human => "human",
            UserRole::Agent => "agent",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "human" => Some(UserRole::Human),
            "agent" => Some(UserRole::Agent),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub role: UserRole,
    pub agent_type: Option<String>,
    pub avatar_url: Option<String>,
    pub bio: Option<String>,
    pub metadata: Value,
    pub has_password: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    Direct,
    Group,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Direct => "direct",
            ConversationKind::Group => "group",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(ConversationKind::Direct),
            "group" => Some(ConversationKind::Group),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub public: bool,
    pub title: Option<String>,
    pub description: Option<String>,
    pub metadata: Value,
    pub created_by: UserId,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_msg_seq: i64,
    pub last_event_seq: Seq,
    pub last_message_at: Option<i64>,
    pub live_msg_count: i64,
    /// The timestamp of the conversation's latest change; the next one is strictly later.
    pub last_touch_ms: i64,
}

impl Conversation {
    /// A conversation about to be created: new id, no messages or events yet. Callers set the
    /// title, description, metadata and visibility they were given.
    pub fn fresh(kind: ConversationKind, created_by: &str, now: i64) -> Self {
        Conversation {
            id: crate::ids::new_id(),
            kind,
            public: false,
            title: None,
            description: None,
            metadata: Value::Object(Default::default()),
            created_by: created_by.to_owned(),
            created_at: now,
            updated_at: now,
            last_msg_seq: 0,
            last_event_seq: 0,
            last_message_at: None,
            live_msg_count: 0,
            last_touch_ms: now,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ParticipantRole {
    Member,
    Admin,
    Owner,
}

impl ParticipantRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantRole::Owner => "owner",
            ParticipantRole::Admin => "admin",
            ParticipantRole::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(ParticipantRole::Owner),
            "admin" => Some(ParticipantRole::Admin),
            "member" => Some(ParticipantRole::Member),
            _ => None,
        }
    }
    pub fn can_manage(self) -> bool {
        self >= ParticipantRole::Admin
    }
}

/// A user's standing in a conversation. `left_seq` is set once they left; the row stays so that
/// their settings and the end of their visibility are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub role: ParticipantRole,
    pub joined_seq: Seq,
    pub joined_at: i64,
    pub left_seq: Option<Seq>,
    pub read_msg_seq: i64,
    pub pinned: bool,
    pub pinned_at: Option<i64>,
    pub muted: bool,
    pub cleared_seq: i64,
    /// The newest private event of this user about this conversation (read pointer, settings).
    pub private_seq: Seq,
    /// Filed away by this user (archive is each member's own, like pin and mute).
    pub archived: bool,
}

impl Participant {
    pub fn is_present(&self) -> bool {
        self.left_seq.is_none()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    pub user_id: UserId,
    pub emoji: String,
    /// The event seq of the reaction's latest change.
    pub seq: Seq,
    pub created_at: i64,
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub msg_seq: i64,
    /// The seq of the event that created the message; unique, used as an integer message id.
    pub event_seq: Seq,
    pub sender_id: UserId,
    pub kind: String,
    pub content: String,
    pub metadata: Value,
    pub parent_id: Option<MessageId>,
    pub quoted_id: Option<MessageId>,
    pub created_at: i64,
    /// Strictly increasing within a conversation: every change takes a new millisecond.
    pub updated_at: i64,
    pub edited_at: Option<i64>,
    pub edited_by: Option<UserId>,
    pub deleted_at: Option<i64>,
    pub revoked: bool,
    /// Live replies in the message's thread.
    pub reply_count: i64,
    /// When the thread's latest reply was sent (ms).
    pub last_reply_at: Option<i64>,
    /// The event seq of the newest change to the message.
    pub version: Seq,
}

impl Message {
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// One entry of the global event log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: Seq,
    pub kind: String,
    pub conversation_id: Option<ConversationId>,
    pub audience: Audience,
    pub data: Payload,
    pub at: i64,
}

/// An event's payload: its JSON text as the log stores it, and its JSON value, parsed from the
/// text only when something looks inside. A send renders its text once; most events are only
/// stored and counted, so parsing them up front would be work on the writer for nothing.
#[derive(Clone)]
pub struct Payload {
    text: Arc<str>,
    value: OnceLock<Value>,
}

impl Event {
    /// The event's kind, if it is one this version knows.
    pub fn event_kind(&self) -> Option<crate::event::EventKind> {
        crate::event::EventKind::from_wire(&self.kind)
    }

    /// The payload as its kind's type.
    pub fn typed(&self) -> Result<crate::event::EventData, crate::event::EventError> {
        crate::event::EventData::parse(&self.kind, self.data.text())
    }
}

impl Payload {
    /// A payload from its JSON text (which the caller rendered or read back from the log).
    pub fn from_text(text: impl Into<Arc<str>>) -> Self {
        Payload {
            text: text.into(),
            value: OnceLock::new(),
        }
    }

    pub fn from_value(value: Value) -> Self {
        Payload {
            text: value.to_string().into(),
            value: OnceLock::from(value),
        }
    }

    pub fn text(&self) -> &Arc<str> {
        &self.text
    }

    /// The payload as a JSON value; text that is not JSON reads as `null`.
    pub fn value(&self) -> &Value {
        self.value
            .get_or_init(|| serde_json::from_str(&self.text).unwrap_or(Value::Null))
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text || self.value() == other.value()
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Who may see an event: the conversation's participants at the event's seq, or one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    Conversation(ConversationId),
    User(UserId),
}

impl Audience {
    /// The stream key the event log is indexed by.
    pub fn stream(&self) -> String {
        match self {
            Audience::Conversation(c) => format!("c:{c}"),
            Audience::User(u) => format!("u:{u}"),
        }
    }
    pub fn from_stream(s: &str) -> Option<Self> {
        match s.split_at_checked(2)? {
            ("c:", id) => Some(Audience::Conversation(id.to_owned())),
            ("u:", id) => Some(Audience::User(id.to_owned())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_stream_round_trips() {
        for a in [
            Audience::Conversation("abc".into()),
            Audience::User("u1".into()),
        ] {
            assert_eq!(Audience::from_stream(&a.stream()), Some(a));
        }
        assert_eq!(Audience::from_stream("x"), None);
    }

    #[test]
    fn payload_reads_its_text_as_json_when_asked() {
        let p = Payload::from_text(r#"{"userId":"u1","n":2}"#);
        assert_eq!(p.value()["userId"], "u1");
        assert_eq!(
            p,
            Payload::from_value(serde_json::json!({"n": 2, "userId": "u1"}))
        );
        assert_ne!(p, Payload::from_text(r#"{"userId":"u2","n":2}"#));
        assert_eq!(Payload::from_text("not json").value(), &Value::Null);
        let v = Payload::from_value(serde_json::json!({"a": [1, "b"]}));
        assert_eq!(v.text().as_ref(), r#"{"a":[1,"b"]}"#);
    }
}
