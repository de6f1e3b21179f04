//! The event log's schema: one type per kind of event, behind [`EventData`], whose variant
//! names the kind and whose payload is what the log stores.
//!
//! Every emitter builds one of these and every reader matches on it, so a new kind is a compile
//! error in each `match` until it is handled there. The payloads serialize to exactly the JSON
//! the log has always held (the native face's shapes: keys in the order the structs declare,
//! which is alphabetical for all but `message.new`, absent optionals as `null`), so a catch-up
//! can still pass stored text through unparsed and old databases need no conversion.

use crate::{ConversationId, MessageId, Seq, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Wire names of the kinds.
pub mod kind {
    pub const MESSAGE_NEW: &str = "message.new";
    pub const MESSAGE_EDIT: &str = "message.edit";
    pub const MESSAGE_DELETE: &str = "message.delete";
    pub const MESSAGE_REACTION: &str = "message.reaction";
    pub const MESSAGE_HIDE: &str = "message.hide";
    pub const MESSAGE_READ: &str = "message.read";
    pub const CONVERSATION_CREATE: &str = "conversation.create";
    pub const CONVERSATION_UPDATE: &str = "conversation.update";
    pub const CONVERSATION_ARCHIVE: &str = "conversation.archive";
    pub const CONVERSATION_UNARCHIVE: &str = "conversation.unarchive";
    pub const CONVERSATION_READ: &str = "conversation.read";
    pub const CONVERSATION_SETTINGS: &str = "conversation.settings";
    pub const CONVERSATION_EXTRA: &str = "conversation.extra";
    pub const CONVERSATION_HIDE: &str = "conversation.hide";
    pub const PARTICIPANT_ADD: &str = "participant.add";
    pub const PARTICIPANT_REMOVE: &str = "participant.remove";
}

/// The kinds of events, without their payloads: what renderers that only need the kind match on
/// (exhaustively, so a new kind does not compile until they say how to show it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    MessageNew,
    MessageEdit,
    MessageDelete,
    MessageReaction,
    MessageHide,
    MessageRead,
    ConversationCreate,
    ConversationUpdate,
    ConversationArchive,
    ConversationUnarchive,
    ConversationRead,
    ConversationSettings,
    ConversationExtra,
    ConversationHide,
    ParticipantAdd,
    ParticipantRemove,
}

impl EventKind {
    pub const ALL: [EventKind; 16] = [
        EventKind::MessageNew,
        EventKind::MessageEdit,
        EventKind::MessageDelete,
        EventKind::MessageReaction,
        EventKind::MessageHide,
        EventKind::MessageRead,
        EventKind::ConversationCreate,
        EventKind::ConversationUpdate,
        EventKind::ConversationArchive,
        EventKind::ConversationUnarchive,
        EventKind::ConversationRead,
        EventKind::ConversationSettings,
        EventKind::ConversationExtra,
        EventKind::ConversationHide,
        EventKind::ParticipantAdd,
        EventKind::ParticipantRemove,
    ];

    /// The wire name, as the log stores it.
    pub fn as_str(self) -> &'static str {
        use EventKind::*;
        match self {
            MessageNew => kind::MESSAGE_NEW,
            MessageEdit => kind::MESSAGE_EDIT,
            MessageDelete => kind::MESSAGE_DELETE,
            MessageReaction => kind::MESSAGE_REACTION,
            MessageHide => kind::MESSAGE_HIDE,
            MessageRead => kind::MESSAGE_READ,
            ConversationCreate => kind::CONVERSATION_CREATE,
            ConversationUpdate => kind::CONVERSATION_UPDATE,
            ConversationArchive => kind::CONVERSATION_ARCHIVE,
            ConversationUnarchive => kind::CONVERSATION_UNARCHIVE,
            ConversationRead => kind::CONVERSATION_READ,
            ConversationSettings => kind::CONVERSATION_SETTINGS,
            ConversationExtra => kind::CONVERSATION_EXTRA,
            ConversationHide => kind::CONVERSATION_HIDE,
            ParticipantAdd => kind::PARTICIPANT_ADD,
            ParticipantRemove => kind::PARTICIPANT_REMOVE,
        }
    }

    pub fn from_wire(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A message as events carry it (`message.new`, and the snapshot faces render).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageBody {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
    pub metadata: Value,
    pub parent_id: Option<MessageId>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_message_id: Option<MessageId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// Present (possibly null) exactly when `editedAt` is.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "present_or_null"
    )]
    pub edited_by: Option<Option<UserId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_count: Option<i64>,
    /// The message's `msg_seq` in its conversation.
    pub seq: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// `message.edit`: the message's new content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageEdit {
    pub content: String,
    pub conversation_id: ConversationId,
    /// The seq of the message's `message.new`: who could see the message sees its changes.
    pub created_seq: Seq,
    pub edited_at: Option<String>,
    pub edited_by: Option<UserId>,
    pub id: MessageId,
    pub metadata: Value,
    #[serde(rename = "type")]
    pub kind: String,
    pub updated_at: String,
}

/// `message.delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDelete {
    pub conversation_id: ConversationId,
    pub created_seq: Seq,
    pub id: MessageId,
}

/// Whether a reaction was added or taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReactionAction {
    Add,
    Remove,
}

/// `message.reaction`: one user's change, and the message's reactions after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageReaction {
    pub action: ReactionAction,
    pub conversation_id: ConversationId,
    pub created_seq: Seq,
    pub emoji: String,
    /// The message id (kept beside `messageId` for the native clients that read `id`).
    pub id: MessageId,
    pub message_id: MessageId,
    /// User ids by emoji.
    pub reactions: BTreeMap<String, Vec<UserId>>,
    pub user_id: UserId,
}

/// `message.hide` (private): the reader deleted a message for themselves only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageHide {
    pub conversation_id: ConversationId,
    pub created_seq: Seq,
    pub message_id: MessageId,
    pub msg_seq: i64,
}

/// A member as conversation snapshots list them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberBody {
    pub display_name: String,
    pub role: String,
    pub user_id: UserId,
    pub user_role: String,
    pub username: String,
}

/// A conversation snapshot: `conversation.create` (shared at creation, private to each member
/// who joins later) and `conversation.update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationBody {
    pub archived: bool,
    pub created_at: String,
    pub created_by: UserId,
    pub description: Option<String>,
    pub id: ConversationId,
    pub last_message_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberBody>>,
    pub metadata: Value,
    pub title: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub updated_at: String,
}

/// `conversation.archive` and `conversation.unarchive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveChange {
    pub conversation_id: ConversationId,
    pub id: ConversationId,
}

/// `conversation.read` (private): the reader's read pointer moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadPointer {
    pub conversation_id: ConversationId,
    pub last_read_message_id: Option<MessageId>,
    pub read_at: String,
    pub read_msg_seq: i64,
    pub user_id: UserId,
}

/// `message.read` (shared): a member's read pointer moved forward, for the other members' read
/// receipts. `readBy` repeats `userId` under the name the Prismer clients read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    pub conversation_id: ConversationId,
    pub last_read_message_id: Option<MessageId>,
    pub read_at: String,
    pub read_by: UserId,
    pub read_msg_seq: i64,
    pub user_id: UserId,
}

/// `conversation.settings` (private): the reader's pin, mute and cleared-history seq.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateSettings {
    /// Messages up to this seq are cleared from the reader's history (0: none).
    #[serde(default)]
    pub cleared_seq: i64,
    pub conversation_id: ConversationId,
    pub muted: bool,
    pub pinned: bool,
    pub pinned_at: Option<String>,
}

/// `conversation.extra` (private): the reader's client extras (TangSengDaoDao).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationExtra {
    pub browse_to: i64,
    pub conversation_id: ConversationId,
    pub draft: String,
    pub keep_message_seq: i64,
    pub keep_offset_y: i64,
}

/// `conversation.hide` (private): removed from the reader's list until its next message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationHide {
    pub conversation_id: ConversationId,
    pub deleted_msg_seq: i64,
}

/// `participant.add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantAdd {
    pub conversation_id: ConversationId,
    pub display_name: String,
    pub role: String,
    pub user_id: UserId,
    pub username: String,
}

/// `participant.remove`: the last event the removed user sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantRemove {
    pub conversation_id: ConversationId,
    pub role: String,
    pub user_id: UserId,
}

/// One event's payload, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    MessageNew(MessageBody),
    MessageEdit(MessageEdit),
    MessageDelete(MessageDelete),
    MessageReaction(MessageReaction),
    MessageHide(MessageHide),
    MessageRead(ReadReceipt),
    ConversationCreate(ConversationBody),
    ConversationUpdate(ConversationBody),
    ConversationArchive(ArchiveChange),
    ConversationUnarchive(ArchiveChange),
    ConversationRead(ReadPointer),
    ConversationSettings(PrivateSettings),
    ConversationExtra(ConversationExtra),
    ConversationHide(ConversationHide),
    ParticipantAdd(ParticipantAdd),
    ParticipantRemove(ParticipantRemove),
}

/// A stored payload that does not read as its kind.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("unknown event kind {0:?}")]
    UnknownKind(String),
    #[error("bad {kind} payload: {source}")]
    Payload {
        kind: &'static str,
        source: serde_json::Error,
    },
}

impl EventData {
    /// The kind's wire name.
    pub fn kind(&self) -> &'static str {
        self.event_kind().as_str()
    }

    pub fn event_kind(&self) -> EventKind {
        use EventData::*;
        match self {
            MessageNew(_) => EventKind::MessageNew,
            MessageEdit(_) => EventKind::MessageEdit,
            MessageDelete(_) => EventKind::MessageDelete,
            MessageReaction(_) => EventKind::MessageReaction,
            MessageHide(_) => EventKind::MessageHide,
            MessageRead(_) => EventKind::MessageRead,
            ConversationCreate(_) => EventKind::ConversationCreate,
            ConversationUpdate(_) => EventKind::ConversationUpdate,
            ConversationArchive(_) => EventKind::ConversationArchive,
            ConversationUnarchive(_) => EventKind::ConversationUnarchive,
            ConversationRead(_) => EventKind::ConversationRead,
            ConversationSettings(_) => EventKind::ConversationSettings,
            ConversationExtra(_) => EventKind::ConversationExtra,
            ConversationHide(_) => EventKind::ConversationHide,
            ParticipantAdd(_) => EventKind::ParticipantAdd,
            ParticipantRemove(_) => EventKind::ParticipantRemove,
        }
    }

    /// The payload as the log stores it.
    pub fn to_json(&self) -> String {
        use EventData::*;
        let text = match self {
            MessageNew(v) => serde_json::to_string(v),
            MessageEdit(v) => serde_json::to_string(v),
            MessageDelete(v) => serde_json::to_string(v),
            MessageReaction(v) => serde_json::to_string(v),
            MessageHide(v) => serde_json::to_string(v),
            MessageRead(v) => serde_json::to_string(v),
            ConversationCreate(v) | ConversationUpdate(v) => serde_json::to_string(v),
            ConversationArchive(v) | ConversationUnarchive(v) => serde_json::to_string(v),
            ConversationRead(v) => serde_json::to_string(v),
            ConversationSettings(v) => serde_json::to_string(v),
            ConversationExtra(v) => serde_json::to_string(v),
            ConversationHide(v) => serde_json::to_string(v),
            ParticipantAdd(v) => serde_json::to_string(v),
            ParticipantRemove(v) => serde_json::to_string(v),
        };
        // Plain structs of strings, numbers and JSON values always serialize.
        text.unwrap_or_else(|_| "null".to_owned())
    }

    /// Reads a stored payload of the given kind.
    pub fn parse(kind_name: &str, text: &str) -> Result<EventData, EventError> {
        fn read<T: for<'de> Deserialize<'de>>(
            kind: &'static str,
            text: &str,
        ) -> Result<T, EventError> {
            serde_json::from_str(text).map_err(|source| EventError::Payload { kind, source })
        }
        use EventData::*;
        Ok(match kind_name {
            kind::MESSAGE_NEW => MessageNew(read(kind::MESSAGE_NEW, text)?),
            kind::MESSAGE_EDIT => MessageEdit(read(kind::MESSAGE_EDIT, text)?),
            kind::MESSAGE_DELETE => MessageDelete(read(kind::MESSAGE_DELETE, text)?),
            kind::MESSAGE_REACTION => MessageReaction(read(kind::MESSAGE_REACTION, text)?),
            kind::MESSAGE_HIDE => MessageHide(read(kind::MESSAGE_HIDE, text)?),
            kind::MESSAGE_READ => MessageRead(read(kind::MESSAGE_READ, text)?),
            kind::CONVERSATION_CREATE => ConversationCreate(read(kind::CONVERSATION_CREATE, text)?),
            kind::CONVERSATION_UPDATE => ConversationUpdate(read(kind::CONVERSATION_UPDATE, text)?),
            kind::CONVERSATION_ARCHIVE => {
                ConversationArchive(read(kind::CONVERSATION_ARCHIVE, text)?)
            }
            kind::CONVERSATION_UNARCHIVE => {
                ConversationUnarchive(read(kind::CONVERSATION_UNARCHIVE, text)?)
            }
            kind::CONVERSATION_READ => ConversationRead(read(kind::CONVERSATION_READ, text)?),
            kind::CONVERSATION_SETTINGS => {
                ConversationSettings(read(kind::CONVERSATION_SETTINGS, text)?)
            }
            kind::CONVERSATION_EXTRA => ConversationExtra(read(kind::CONVERSATION_EXTRA, text)?),
            kind::CONVERSATION_HIDE => ConversationHide(read(kind::CONVERSATION_HIDE, text)?),
            kind::PARTICIPANT_ADD => ParticipantAdd(read(kind::PARTICIPANT_ADD, text)?),
            kind::PARTICIPANT_REMOVE => ParticipantRemove(read(kind::PARTICIPANT_REMOVE, text)?),
            other => return Err(EventError::UnknownKind(other.to_owned())),
        })
    }

    /// The seq of the `message.new` of the message this event changes, for the kinds that
    /// change a message: only those who could see the message see the change.
    pub fn created_seq(&self) -> Option<Seq> {
        use EventData::*;
        match self {
            MessageEdit(v) => Some(v.created_seq),
            MessageDelete(v) => Some(v.created_seq),
            MessageReaction(v) => Some(v.created_seq),
            MessageHide(v) => Some(v.created_seq),
            MessageNew(_)
            | MessageRead(_)
            | ConversationCreate(_)
            | ConversationUpdate(_)
            | ConversationArchive(_)
            | ConversationUnarchive(_)
            | ConversationRead(_)
            | ConversationSettings(_)
            | ConversationExtra(_)
            | ConversationHide(_)
            | ParticipantAdd(_)
            | ParticipantRemove(_) => None,
        }
    }

    /// [`EventData::created_seq`] read straight from stored text, without building the rest of
    /// the payload: the sync read asks this of every change it may filter out.
    pub fn created_seq_in(kind_name: &str, text: &str) -> Option<Seq> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Created {
            created_seq: Seq,
        }
        match kind_name {
            kind::MESSAGE_EDIT
            | kind::MESSAGE_DELETE
            | kind::MESSAGE_REACTION
            | kind::MESSAGE_HIDE => serde_json::from_str::<Created>(text)
                .ok()
                .map(|c| c.created_seq),
            _ => None,
        }
    }

    /// The user a membership event is about.
    pub fn member(&self) -> Option<&str> {
        use EventData::*;
        match self {
            ParticipantAdd(v) => Some(&v.user_id),
            ParticipantRemove(v) => Some(&v.user_id),
            _ => None,
        }
    }
}

/// `Option<Option<T>>` as "absent" (outer `None`) or a value that may be `null`.
mod present_or_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}
