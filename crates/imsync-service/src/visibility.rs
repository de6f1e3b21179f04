//! The one visibility rule, for every read of messages by every face.
//!
//! Which messages: a user sees a message iff the event that created it lies in one of their
//! membership intervals of its conversation (the rule the native sync feed applies to events).
//! In what state: a present participant sees a message's current state; a former participant
//! sees it as it stood when they were removed (the end of their last membership), rebuilt from
//! the log up to then, so that no edit, deletion, reaction or reply made after their removal
//! reaches them through any face. What they saw of a message while present was its state then,
//! so changes made while they were away and back again before the removal are part of it. The
//! conversation's last message for a former participant is likewise the last one they could see.
//!
//! Rebuilding reads the conversation's shared stream between the oldest message to rebuild and
//! the reader's horizon once per page, and only for messages that changed after it: a present
//! participant never pays for it.

use imsync_core::event::{kind as ev, EventData};
use imsync_core::model::{Event, Message, Reaction};
use imsync_core::{Result, Seq};
use imsync_store::repo::participants::{self, Interval};
use imsync_store::repo::{events, messages};
use imsync_store::SqlConn;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// What one user may see of one conversation.
#[derive(Debug, Clone)]
pub(crate) struct Sight {
    conv_id: String,
    intervals: Vec<Interval>,
}

/// A message as one reader sees it; `reactions` is `Some` when they differ from the current
/// ones (a former participant's rebuilt view).
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub message: Message,
    pub reactions: Option<Vec<Reaction>>,
}

impl Sight {
    pub fn of(c: &mut dyn SqlConn, user_id: &str, conv_id: &str) -> Result<Sight> {
        Ok(Sight {
            conv_id: conv_id.to_owned(),
            intervals: participants::intervals_in(c, user_id, conv_id)?,
        })
    }

    pub fn conv_id(&self) -> &str {
        &self.conv_id
    }

    pub fn sees(&self, seq: Seq) -> bool {
        self.intervals.iter().any(|i| i.contains(seq))
    }

    pub fn sees_message(&self, m: &Message) -> bool {
        self.sees(m.event_seq)
    }

    /// The last seq a former participant saw; `None` while they are present.
    pub fn horizon(&self) -> Option<Seq> {
        if self.intervals.iter().any(|i| i.left_seq.is_none()) {
            return None;
        }
        Some(
            self.intervals
                .iter()
                .filter_map(|i| i.left_seq)
                .max()
                .unwrap_or(0),
        )
    }

    /// The `msg_seq` of the newest message the reader could see, for a former participant
    /// (`None` while present: then it is the conversation's own).
    pub fn last_msg_seq(&self, c: &mut dyn SqlConn, conv_last: i64) -> Result<Option<i64>> {
        if self.horizon().is_none() {
            return Ok(None);
        }
        // Messages take msg_seq and event seq in the same order, so within each interval, from
        // the latest, the last message created by its end is found by bisection; if that one
        // predates the interval, the interval saw no message and the one before is tried.
        let mut top = conv_last;
        for i in self.intervals.iter().rev() {
            let upto = i.left_seq.unwrap_or(Seq::MAX);
            let k = messages::last_msg_seq_upto(c, &self.conv_id, top, upto)?;
            if k == 0 {
                break;
            }
            match messages::by_msg_seq(c, &self.conv_id, k)? {
                Some(m) if m.event_seq >= i.joined_seq => return Ok(Some(k)),
                _ => top = k,
            }
        }
        Ok(Some(0))
    }

    /// The messages the reader may see, in the state they may see them in, in the same order.
    pub fn view(&self, c: &mut dyn SqlConn, list: Vec<Message>) -> Result<Vec<Seen>> {
        let list: Vec<Message> = list.into_iter().filter(|m| self.sees_message(m)).collect();
        let Some(horizon) = self.horizon() else {
            return Ok(list
                .into_iter()
                .map(|message| Seen {
                    message,
                    reactions: None,
                })
                .collect());
        };
        let stale = |m: &Message| m.version > horizon;
        let mut rebuilt: HashMap<String, Rebuild> = list
            .iter()
            .filter(|m| stale(m))
            .map(|m| (m.id.clone(), Rebuild::from_current(m)))
            .collect();
        if let Some(from) = list.iter().filter(|m| stale(m)).map(|m| m.event_seq).min() {
            let kinds = [
                ev::MESSAGE_NEW,
                ev::MESSAGE_EDIT,
                ev::MESSAGE_DELETE,
                ev::MESSAGE_REACTION,
            ];
            let mut replies: HashMap<String, String> = HashMap::new();
            for e in events::conversation_range(c, &self.conv_id, from - 1, horizon, &kinds)? {
                apply(&mut rebuilt, &mut replies, &e);
            }
        }
        Ok(list
            .into_iter()
            .map(|m| match rebuilt.remove(&m.id) {
                Some(r) => r.finish(m),
                None => Seen {
                    message: m,
                    reactions: None,
                },
            })
            .collect())
    }
}

/// A former participant's view of one message, built up event by event.
struct Rebuild {
    kind: String,
    content: String,
    metadata: Value,
    edited_at: Option<i64>,
    edited_by: Option<String>,
    deleted_at: Option<i64>,
    updated_at: i64,
    version: Seq,
    reply_count: i64,
    last_reply_at: Option<i64>,
    reactions: Vec<Reaction>,
}

impl Rebuild {
    fn from_current(m: &Message) -> Rebuild {
        Rebuild {
            kind: m.kind.clone(),
            content: m.content.clone(),
            metadata: m.metadata.clone(),
            edited_at: None,
            edited_by: None,
            deleted_at: None,
            updated_at: m.created_at,
            version: m.event_seq,
            reply_count: 0,
            last_reply_at: None,
            reactions: Vec::new(),
        }
    }

    fn finish(self, mut m: Message) -> Seen {
        if self.deleted_at.is_none() {
            // Deletion is final, so a visible one leaves the current fields as they are; an
            // unseen one (a revoke included) is undone.
            m.kind = self.kind;
            m.content = self.content;
            m.metadata = self.metadata;
            m.edited_at = self.edited_at;
            m.edited_by = self.edited_by;
            m.deleted_at = None;
            m.revoked = false;
        }
        m.updated_at = self.updated_at;
        m.version = self.version;
        m.reply_count = self.reply_count;
        m.last_reply_at = self.last_reply_at;
        Seen {
            message: m,
            reactions: Some(self.reactions),
        }
    }

    fn touch(&mut self, e: &Event) {
        self.version = e.seq;
        self.updated_at = self.updated_at.max(e.at);
    }
}

fn apply(rebuilt: &mut HashMap<String, Rebuild>, replies: &mut HashMap<String, String>, e: &Event) {
    let Ok(data) = e.typed() else { return };
    match data {
        EventData::MessageNew(m) => {
            if let Some(r) = rebuilt.get_mut(&m.id) {
                r.kind.clone_from(&m.kind);
                r.content.clone_from(&m.content);
                r.metadata.clone_from(&m.metadata);
            }
            if let Some(parent) = &m.parent_id {
                if let Some(p) = rebuilt.get_mut(parent) {
                    p.reply_count += 1;
                    p.last_reply_at = Some(e.at);
                    p.touch(e);
                    replies.insert(m.id.clone(), parent.clone());
                }
            }
        }
        EventData::MessageEdit(m) => {
            if let Some(r) = rebuilt.get_mut(&m.id) {
                r.kind = m.kind;
                r.content = m.content;
                r.metadata = m.metadata;
                r.edited_at = Some(e.at);
                r.edited_by = m.edited_by;
                r.touch(e);
            }
        }
        EventData::MessageDelete(m) => {
            if let Some(r) = rebuilt.get_mut(&m.id) {
                r.deleted_at = Some(e.at);
                r.touch(e);
            }
            if let Some(parent) = replies.get(&m.id) {
                if let Some(p) = rebuilt.get_mut(parent) {
                    p.reply_count = (p.reply_count - 1).max(0);
                }
            }
        }
        EventData::MessageReaction(m) => {
            if let Some(r) = rebuilt.get_mut(&m.message_id) {
                r.reactions = reactions_of(&m.reactions, e);
                r.touch(e);
            }
        }
        // Nothing else changes a message.
        EventData::MessageHide(_)
        | EventData::MessageRead(_)
        | EventData::ConversationCreate(_)
        | EventData::ConversationUpdate(_)
        | EventData::ConversationArchive(_)
        | EventData::ConversationUnarchive(_)
        | EventData::ConversationRead(_)
        | EventData::ConversationSettings(_)
        | EventData::ConversationExtra(_)
        | EventData::ConversationHide(_)
        | EventData::ParticipantAdd(_)
        | EventData::ParticipantRemove(_) => {}
    }
}

/// The user ids by emoji that a reaction event carries, as reaction rows.
fn reactions_of(snapshot: &BTreeMap<String, Vec<String>>, e: &Event) -> Vec<Reaction> {
    let mut out = Vec::new();
    for (emoji, users) in snapshot {
        for user_id in users {
            out.push(Reaction {
                user_id: user_id.clone(),
                emoji: emoji.clone(),
                seq: e.seq,
                created_at: e.at,
                removed: false,
            });
        }
    }
    out
}
