//! Messages as faces that sync by time see them (Rocket.Chat): change feeds of a room ordered by
//! `updated_at`, threads, and messages addressed by id alone.
//!
//! Access takes a present participant, as a Rocket.Chat subscription does, and within the room
//! the one visibility rule (see `visibility`): only messages created while the reader was a
//! participant, so a member who left and came back does not read what was said meanwhile, nor
//! what was said before they first joined. The feeds rely on `updated_at` being strictly increasing within a
//! conversation (see `repo::message_changes`), so a cursor on it never skips or repeats.

use crate::conversations::require_participant;
use crate::visibility::Sight;
use crate::Service;
use imsync_core::model::{Conversation, Message, User};
use imsync_core::{validate, Error, ErrorCode, Result};
use imsync_store::repo::rocketchat::message_changes::{self as changes, Bound, Set};
use imsync_store::repo::{messages, reactions, users};
use imsync_store::SqlConn;
use std::collections::HashMap;

/// A message with what renderers need besides it: the people it names, its reactions by emoji
/// (usernames in reaction order), and the distinct repliers of a thread parent.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub message: Message,
    pub sender: Option<User>,
    pub edited_by: Option<User>,
    pub reactions: Vec<(String, Vec<String>)>,
    pub replies: Vec<String>,
}

/// A thread's changes after a time: replies that changed, and replies deleted since.
#[derive(Debug, Clone, Default)]
pub struct ThreadChanges {
    pub update: Vec<MessageView>,
    pub remove: Vec<MessageView>,
}

/// Which part of a room's change feed to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSet {
    Updated,
    Deleted,
}

impl ChangeSet {
    fn set(self) -> Set {
        match self {
            ChangeSet::Updated => Set::Live,
            ChangeSet::Deleted => Set::Trash,
        }
    }
}

/// Adds senders, editors, reactions and repliers to messages, in one read.
pub(crate) fn decorate(c: &mut dyn SqlConn, msgs: Vec<Message>) -> Result<Vec<MessageView>> {
    let mut people: HashMap<String, Option<User>> = HashMap::new();
    let mut person = |c: &mut dyn SqlConn, id: &str| -> Result<Option<User>> {
        if let Some(u) = people.get(id) {
            return Ok(u.clone());
        }
        let u = users::get(c, id)?;
        people.insert(id.to_owned(), u.clone());
        Ok(u)
    };
    let ids: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
    let mut by_message: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
    for (mid, emoji, _, username) in changes::reactions_of(c, &ids)? {
        let list = by_message.entry(mid).or_default();
        match list.iter_mut().find(|(e, _)| *e == emoji) {
            Some((_, names)) => names.push(username),
            None => list.push((emoji, vec![username])),
        }
    }
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        let sender = person(c, &m.sender_id)?;
        let edited_by = match &m.edited_by {
            Some(id) => person(c, id)?,
            None => None,
        };
        let replies = if m.reply_count > 0 {
            changes::reply_senders(c, &m.id)?
        } else {
            Vec::new()
        };
        out.push(MessageView {
            reactions: by_message.remove(&m.id).unwrap_or_default(),
            message: m,
            sender,
            edited_by,
            replies,
        });
    }
    Ok(out)
}

/// A message by id alone and the room it is in, if the user is present in that room and could
/// see the message.
fn locate(c: &mut dyn SqlConn, user_id: &str, msg_id: &str) -> Result<(Message, Conversation)> {
    let m = messages::get(c, msg_id)?.ok_or_else(|| Error::not_found("Message"))?;
    let (conv, _) = require_participant(c, &m.conversation_id, user_id)?;
    if !Sight::of(c, user_id, &conv.id)?.sees_message(&m) {
        return Err(Error::not_found("Message"));
    }
    Ok((m, conv))
}

/// The room and what the user may see of it, if they are present in it.
fn room_sight(c: &mut dyn SqlConn, user_id: &str, conv_id: &str) -> Result<(Conversation, Sight)> {
    let (conv, _) = require_participant(c, conv_id, user_id)?;
    let sight = Sight::of(c, user_id, &conv.id)?;
    Ok((conv, sight))
}

/// A thread parent the user may read, with what they may see of its room.
fn readable_parent(c: &mut dyn SqlConn, user_id: &str, tmid: &str) -> Result<(Message, Sight)> {
    let parent = messages::get(c, tmid)?
        .filter(|m| Set::Live.contains(m))
        .ok_or_else(|| Error::not_found("Message"))?;
    let (_, sight) = room_sight(c, user_id, &parent.conversation_id)?;
    if !sight.sees_message(&parent) {
        return Err(Error::not_found("Message"));
    }
    Ok((parent, sight))
}

impl Service {
    /// The room if the user is present in it: `NOT_FOUND` or `NOT_PARTICIPANT` otherwise.
    pub async fn readable_room(&self, me: &User, conv_id: &str) -> Result<Conversation> {
        let (me, conv_id) = (me.id.clone(), conv_id.to_owned());
        self.store
            .read(move |c| Ok(require_participant(c, &conv_id, &me)?.0))
            .await
    }

    /// Everything in the room changed after `since` ms, newest creation first: the live
    /// messages (with removed thread parents) and the deleted ones.
    pub async fn room_changes_since(
        &self,
        me: &User,
        conv_id: &str,
        since: i64,
    ) -> Result<(Vec<MessageView>, Vec<Message>)> {
        let (me, conv_id) = (me.id.clone(), conv_id.to_owned());
        self.store
            .read(move |c| {
                let (conv, sight) = room_sight(c, &me, &conv_id)?;
                let mut live = changes::since_by_created(c, &conv.id, Set::Live, since)?;
                let mut trash = changes::since_by_created(c, &conv.id, Set::Trash, since)?;
                live.retain(|m| sight.sees_message(m));
                trash.retain(|m| sight.sees_message(m));
                Ok((decorate(c, live)?, trash))
            })
            .await
    }

    /// Up to `limit` messages of one side of the room's change feed after (ascending) or
    /// before (descending) a time in ms.
    pub async fn room_changes_page(
        &self,
        me: &User,
        conv_id: &str,
        set: ChangeSet,
        after: Option<i64>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<MessageView>> {
        let bound = match (after, before) {
            (Some(a), None) => Bound::After(a),
            (None, Some(b)) => Bound::Before(b),
            _ => return Err(Error::param("exactly one of after and before")),
        };
        let (me, conv_id) = (me.id.clone(), conv_id.to_owned());
        self.store
            .read(move |c| {
                let (conv, sight) = room_sight(c, &me, &conv_id)?;
                // Pages of the feed past messages the reader may not see, until `limit` are
                // seen: what is kept is the seen subsequence, in the feed's order, so cursors
                // built from it skip nothing the reader may see.
                let mut page = Vec::new();
                let mut from = bound;
                loop {
                    let raw = changes::page(c, &conv.id, set.set(), from, limit)?;
                    let full = raw.len() as i64 == limit && limit > 0;
                    let Some(last) = raw.last().map(|m| m.updated_at) else {
                        break;
                    };
                    from = match from {
                        Bound::After(_) => Bound::After(last),
                        Bound::Before(_) => Bound::Before(last),
                    };
                    page.extend(raw.into_iter().filter(|m| sight.sees_message(m)));
                    if !full || page.len() as i64 >= limit {
                        break;
                    }
                }
                page.truncate(limit.max(0) as usize);
                match set {
                    ChangeSet::Updated => decorate(c, page),
                    ChangeSet::Deleted => Ok(page
                        .into_iter()
                        .map(|message| MessageView {
                            message,
                            sender: None,
                            edited_by: None,
                            reactions: Vec::new(),
                            replies: Vec::new(),
                        })
                        .collect()),
                }
            })
            .await
    }

    /// A thread parent by id, if it exists (deleted ones only while they keep replies) and the
    /// user is present in its room.
    pub async fn thread_parent(&self, me: &User, tmid: &str) -> Result<MessageView> {
        let (me, tmid) = (me.id.clone(), tmid.to_owned());
        self.store
            .read(move |c| {
                let (m, _) = readable_parent(c, &me, &tmid)?;
                Ok(decorate(c, vec![m])?.remove(0))
            })
            .await
    }

    /// The thread's replies changed after `since` ms, ascending by `updated_at`, split into
    /// changed and deleted.
    pub async fn thread_changes(&self, me: &User, tmid: &str, since: i64) -> Result<ThreadChanges> {
        let (me, tmid) = (me.id.clone(), tmid.to_owned());
        self.store
            .read(move |c| {
                let (parent, sight) = readable_parent(c, &me, &tmid)?;
                let (live, trash): (Vec<_>, Vec<_>) = changes::thread_since(c, &parent.id, since)?
                    .into_iter()
                    .filter(|m| sight.sees_message(m))
                    .partition(|m| Set::Live.contains(m));
                Ok(ThreadChanges {
                    update: decorate(c, live)?,
                    remove: decorate(c, trash)?,
                })
            })
            .await
    }

    /// A page of a thread's live replies by creation order, and how many it has.
    pub async fn thread_replies(
        &self,
        me: &User,
        tmid: &str,
        offset: i64,
        limit: i64,
        descending: bool,
    ) -> Result<(Vec<MessageView>, i64)> {
        let (me, tmid) = (me.id.clone(), tmid.to_owned());
        self.store
            .read(move |c| {
                let (parent, sight) = readable_parent(c, &me, &tmid)?;
                let (mut page, total) =
                    changes::thread_page(c, &parent.id, offset, limit, descending)?;
                // Replies made while the reader was away are left out of the page; the total
                // stays the thread's, as the parent's reply count shows it to every member.
                page.retain(|m| sight.sees_message(m));
                Ok((decorate(c, page)?, total))
            })
            .await
    }

    /// A message by id alone, with its decorations, if the user is present in its room.
    pub async fn message_view(&self, me: &User, msg_id: &str) -> Result<MessageView> {
        let (me, msg_id) = (me.id.clone(), msg_id.to_owned());
        self.store
            .read(move |c| {
                let (m, _) = locate(c, &me, &msg_id)?;
                Ok(decorate(c, vec![m])?.remove(0))
            })
            .await
    }

    /// A message by id alone (deleted ones too), if the user is present in its room.
    pub async fn message_by_id(&self, me: &User, msg_id: &str) -> Result<Message> {
        let (me, msg_id) = (me.id.clone(), msg_id.to_owned());
        self.store
            .read(move |c| Ok(locate(c, &me, &msg_id)?.0))
            .await
    }

    /// Adds the decorations to messages a write answered with, keeping their fields as they are.
    pub async fn decorate(&self, msgs: Vec<Message>) -> Result<Vec<MessageView>> {
        self.store.read(move |c| decorate(c, msgs)).await
    }

    /// Sets (`Some`) or toggles (`None`) the caller's reaction on a message addressed by id
    /// alone; answers the message as the write left it.
    pub async fn react_by_id(
        &self,
        me: &User,
        msg_id: &str,
        emoji: String,
        present: Option<bool>,
    ) -> Result<Message> {
        validate::non_blank("emoji", &emoji)?;
        validate::max_len("emoji", &emoji, validate::MAX_EMOJI_LEN)?;
        let (me, msg_id) = (me.id.clone(), msg_id.to_owned());
        self.store
            .write(move |c| {
                let (mut m, _) = locate(c, &me, &msg_id)?;
                if m.is_deleted() {
                    return Err(Error::not_found("Message"));
                }
                let add = match present {
                    Some(p) => p,
                    None => !reactions::is_present(c, &m.id, &me, &emoji)?,
                };
                crate::messages::react_in(c, &mut m, &me, &emoji, add)?;
                Ok(m)
            })
            .await
    }

    /// Deletes a message addressed by id alone (the sender only); answers the tombstone.
    pub async fn delete_by_id(&self, me: &User, msg_id: &str) -> Result<Message> {
        let m = self.message_by_id(me, msg_id).await?;
        if m.is_deleted() {
            return Err(Error::not_found("Message"));
        }
        if m.sender_id != me.id {
            return Err(Error::new(
                ErrorCode::NotSender,
                "Only the sender may delete a message",
            ));
        }
        self.delete_message(me, &m.conversation_id, &m.id).await
    }
}
