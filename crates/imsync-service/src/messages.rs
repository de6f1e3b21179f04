//! Messages: send (idempotent), history, edit, delete, reactions, delivery receipts.
//!
//! Idempotency: a send may carry a key. The record (sender, conversation, key) → message is
//! written in the send's own transaction and kept as long as the message, so a retry — days
//! later, after a restart, through another node — finds it and gets the original message back
//! without a new event. The same key with a different payload is refused with 409.

use crate::contacts::check_not_blocked;
use crate::conversations::{archive_in, open_direct_in, require_participant};
use crate::{payload, resolve_user, Service};
use imsync_core::event::{kind as ev, EventData, MessageReaction, ReactionAction};
use imsync_core::model::{Audience, ConversationKind, Message, Payload, User};
use imsync_core::{ids, time::now_ms, validate, Error, ErrorCode, Result};
use imsync_store::repo::messages::Page;
use imsync_store::repo::rocketchat::message_changes;
use imsync_store::repo::{
    conversations as convs, events, idempotency, messages, participants, reactions,
};
use imsync_store::SqlConn;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    pub content: String,
    pub kind: Option<String>,
    pub metadata: Option<Value>,
    pub parent_id: Option<String>,
    pub quoted_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// A client-chosen message id (Rocket.Chat `chat.sendMessage`); must be unused.
    pub id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub message: Message,
    /// The message as the native API renders it (JSON text), shared with its event's payload.
    pub rendered: Arc<str>,
    /// False when an idempotent retry returned the message the key made before.
    pub created: bool,
}

#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    /// The present reactions of the page's messages: user ids by emoji, by message id (absent
    /// for a message nobody reacted to).
    pub reactions: HashMap<String, BTreeMap<String, Vec<String>>>,
    pub total: i64,
    pub conversation_id: String,
}

impl NewMessage {
    fn validate(&self) -> Result<()> {
        validate::message_type(self.kind.as_deref().unwrap_or("text"))?;
        validate::max_len("content", &self.content, validate::MAX_CONTENT_LEN)?;
        if let Some(m) = &self.metadata {
            if !m.is_object() {
                return Err(Error::invalid("metadata must be an object"));
            }
        }
        if let Some(k) = &self.idempotency_key {
            if k.is_empty() || k.len() > validate::MAX_IDEMPOTENCY_KEY_LEN {
                return Err(Error::invalid(format!(
                    "idempotency key must have 1 to {} characters",
                    validate::MAX_IDEMPOTENCY_KEY_LEN
                )));
            }
        }
        if let Some(id) = &self.id {
            if id.is_empty() || id.len() > 64 {
                return Err(Error::invalid("message id must have 1 to 64 characters"));
            }
        }
        Ok(())
    }

    /// What a retry must repeat to count as the same send.
    fn fingerprint(&self) -> String {
        let mut metadata = self.metadata.clone().unwrap_or_else(|| json!({}));
        if let Some(o) = metadata.as_object_mut() {
            o.remove("_idempotencyKey");
        }
        let canonical = json!({
            "content": self.content,
            "type": self.kind.as_deref().unwrap_or("text"),
            "metadata": metadata,
            "parentId": self.parent_id,
            "quotedMessageId": self.quoted_id,
        });
        ids::hex(&Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// A message of the conversation that the user could see, or 404.
fn visible_message(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    msg_id: &str,
) -> Result<Message> {
    let m = messages::get(c, msg_id)?
        .filter(|m| m.conversation_id == conv_id)
        .ok_or_else(|| Error::not_found("Message"))?;
    let seen = participants::intervals_in(c, user_id, conv_id)?
        .iter()
        .any(|i| i.contains(m.event_seq));
    if !seen {
        return Err(Error::not_found("Message"));
    }
    Ok(m)
}

/// A message to send as far as it is known before the writer: built and rendered but for its
/// seq and stamps, so that the writer's thread only fills those in.
pub(crate) struct Outgoing {
    message: Message,
    draft: payload::Draft,
}

impl Outgoing {
    pub(crate) fn new(me: &User, conv_id: &str, new: &NewMessage) -> Outgoing {
        let mut metadata = new.metadata.clone().unwrap_or_else(|| json!({}));
        if let (Some(key), Some(o)) = (&new.idempotency_key, metadata.as_object_mut()) {
            o.entry("_idempotencyKey").or_insert_with(|| json!(key));
        }
        let message = Message {
            id: new.id.clone().unwrap_or_else(ids::new_id),
            conversation_id: conv_id.to_owned(),
            msg_seq: 0,
            event_seq: 0,
            sender_id: me.id.clone(),
            kind: new.kind.clone().unwrap_or_else(|| "text".into()),
            content: new.content.clone(),
            metadata,
            parent_id: new.parent_id.clone(),
            quoted_id: new.quoted_id.clone(),
            created_at: 0,
            updated_at: 0,
            edited_at: None,
            edited_by: None,
            deleted_at: None,
            revoked: false,
            reply_count: 0,
            last_reply_at: None,
            version: 0,
        };
        Outgoing {
            draft: payload::Draft::of(&message),
            message,
        }
    }
}

/// The send itself, inside a write.
pub(crate) fn send_in(
    c: &mut dyn SqlConn,
    me: &User,
    new: &NewMessage,
    out: &Outgoing,
) -> Result<SendOutcome> {
    let conv_id = &out.message.conversation_id;
    let mut head =
        convs::send_head(c, conv_id, &me.id)?.ok_or_else(|| Error::not_found("Conversation"))?;
    if !head.present {
        return Err(Error::not_participant());
    }
    // Only a keyed send is compared with its retries.
    let fingerprint = new.idempotency_key.as_ref().map(|_| new.fingerprint());
    if let (Some(key), Some(fingerprint)) = (&new.idempotency_key, &fingerprint) {
        if let Some((message_id, hash)) = idempotency::find(c, &me.id, &head.id, key)? {
            if &hash != fingerprint {
                return Err(Error::new(
                    ErrorCode::IdempotencyKeyReused,
                    "This idempotency key was already used with a different message",
                ));
            }
            let message = messages::get(c, &message_id)?
                .ok_or_else(|| Error::internal("idempotency record without its message"))?;
            return Ok(SendOutcome {
                rendered: payload::message_text(&message),
                message,
                created: false,
            });
        }
    }
    // Before any read made in turn, which would end the use of the reads fetched ahead.
    let file = crate::files::attachable(c, me, &out.message)?;
    if head.kind == ConversationKind::Direct {
        if let Some(peer) = participants::peer_of(c, &head.id, &me.id)? {
            check_not_blocked(c, &me.id, &peer)?;
        }
    }
    if head.sender_archived {
        // Writing to a conversation one had filed away brings it back, for the writer only.
        archive_in(c, &head.id, &me.id, false)?;
    }
    if head.kind == ConversationKind::Direct {
        // A direct conversation the peer had left comes back to them with the new message.
        if let Some(peer) = participants::list_present(c, &head.id)?
            .iter()
            .all(|p| p.user_id == me.id)
            .then(|| peer_user(c, &head.id, &me.id))
            .transpose()?
            .flatten()
        {
            let conv = convs::get(c, &head.id)?.ok_or_else(|| Error::not_found("Conversation"))?;
            crate::conversations::add_member(
                c,
                &conv,
                &peer,
                imsync_core::model::ParticipantRole::Member,
            )?;
            // Adding the peer moved the conversation: the message slot needs it as it is now.
            head = convs::send_head(c, &head.id, &me.id)?
                .ok_or_else(|| Error::not_found("Conversation"))?;
        }
    }
    let mut parent = None;
    if let Some(pid) = &new.parent_id {
        let p = visible_message(c, &head.id, &me.id, pid)
            .map_err(|_| Error::invalid("parentId does not name a message of this conversation"))?;
        if p.is_deleted() {
            return Err(Error::invalid("parentId names a deleted message"));
        }
        parent = Some(p);
    }
    if let Some(q) = &new.quoted_id {
        visible_message(c, &head.id, &me.id, q).map_err(|_| {
            Error::invalid("quotedMessageId does not name a message of this conversation")
        })?;
    }
    if new.id.is_some() && messages::exists(c, &out.message.id)? {
        return Err(Error::conflict("A message with this id already exists"));
    }
    let now = now_ms();
    let slot = convs::message_slot(&head, now);
    let (msg_seq, stamp) = slot;
    let mut message = out.message.clone();
    (message.msg_seq, message.created_at, message.updated_at) = (msg_seq, stamp, stamp);
    let rendered = out.draft.finish(msg_seq, stamp);
    let e = events::append_rendered(
        c,
        ev::MESSAGE_NEW,
        Audience::Conversation(head.id.clone()),
        Some(&head.id),
        Payload::from_text(rendered.clone()),
        now,
    )?;
    message.event_seq = e.seq;
    message.version = e.seq;
    convs::message_appended(c, &head, slot, e.seq)?;
    messages::insert(c, &message)?;
    if let Some(file) = file {
        crate::files::attach_in(c, file, &message)?;
    }
    if let (Some(key), Some(fingerprint)) = (&new.idempotency_key, &fingerprint) {
        // Another node committed the same key first: this attempt fails with a conflict, rolls
        // back, and the caller retries, finding that message.
        idempotency::record(c, &me.id, &head.id, key, &message.id, fingerprint, now)?;
    }
    participants::advance_read_later(c, &head.id, &me.id, msg_seq)?;
    if let Some(mut p) = parent {
        p.reply_count += 1;
        p.last_reply_at = Some(stamp);
        p.updated_at = convs::next_touch_ms(c, &head.id, now)?;
        messages::save(c, &p)?;
    }
    Ok(SendOutcome {
        message,
        rendered,
        created: true,
    })
}

impl Service {
    pub async fn send(&self, me: &User, conv_id: &str, new: NewMessage) -> Result<SendOutcome> {
        new.validate()?;
        let retry = new.idempotency_key.is_some();
        // Rendered here, on the caller's thread, to keep the writer's share of a send small.
        let out = Arc::new(Outgoing::new(me, conv_id, &new));
        let new = Arc::new(new);
        // What `send_in` reads first, so that a batch of sends can fetch it for all of them in
        // one round trip (a conversation is the scope: a send writes only its own).
        let mut reads = vec![convs::send_head_read(conv_id, &me.id)];
        if let Some(key) = &new.idempotency_key {
            reads.push(idempotency::find_read(&me.id, conv_id, key));
        }
        reads.extend(crate::files::attach_read(me, &out.message));
        for attempt in 0..2 {
            let (me2, new2, out2) = (me.clone(), new.clone(), out.clone());
            match self
                .store
                .write_repeatable_reading(reads.clone(), move |c| send_in(c, &me2, &new2, &out2))
                .await
            {
                Err(e) if retry && attempt == 0 && e.code == ErrorCode::Conflict => continue,
                other => return other,
            }
        }
        Err(Error::conflict("idempotency key raced twice"))
    }

    /// Sends to the direct conversation with another user, creating it on first use.
    pub async fn send_direct(
        &self,
        me: &User,
        other_ref: &str,
        new: NewMessage,
    ) -> Result<SendOutcome> {
        new.validate()?;
        for attempt in 0..2 {
            let (me2, other, new2) = (me.clone(), other_ref.to_owned(), new.clone());
            let result = self
                .store
                .write(move |c| {
                    let other = resolve_user(c, &other)?;
                    // A retry of a keyed send answers from its record before the conversation is
                    // reopened: re-adding a peer who left would append events for a duplicate.
                    if let Some(key) = &new2.idempotency_key {
                        if let Some(conv) = convs::get_direct(c, &me2.id, &other.id)? {
                            let present = participants::get(c, &conv.id, &me2.id)?
                                .is_some_and(|p| p.is_present());
                            if present && idempotency::find(c, &me2.id, &conv.id, key)?.is_some() {
                                return send_in(
                                    c,
                                    &me2,
                                    &new2,
                                    &Outgoing::new(&me2, &conv.id, &new2),
                                );
                            }
                        }
                    }
                    let (conv, _) = open_direct_in(c, &me2, &other, None)?;
                    send_in(c, &me2, &new2, &Outgoing::new(&me2, &conv.id, &new2))
                })
                .await;
            match result {
                Err(e) if attempt == 0 && e.code == ErrorCode::Conflict => continue,
                other => return other,
            }
        }
        Err(Error::conflict("direct send raced twice"))
    }

    /// A page of live messages, ascending. `before`/`after` are message ids.
    pub async fn history(
        &self,
        me: &User,
        conv_id: &str,
        before: Option<String>,
        after: Option<String>,
        limit: i64,
    ) -> Result<HistoryPage> {
        let (me, conv_id) = (me.id.clone(), conv_id.to_owned());
        self.store
            .read(move |c| {
                let (conv, _) = require_participant(c, &conv_id, &me)?;
                let page = match (before, after) {
                    (Some(_), Some(_)) => {
                        return Err(Error::param("before and after cannot be used together"))
                    }
                    (Some(b), None) => Page::Before(visible_message(c, &conv.id, &me, &b)?.msg_seq),
                    (None, Some(a)) => Page::After(visible_message(c, &conv.id, &me, &a)?.msg_seq),
                    (None, None) => Page::Latest,
                };
                let visible: Vec<_> = participants::intervals_in(c, &me, &conv.id)?
                    .into_iter()
                    .map(|i| (i.joined_seq, i.left_seq))
                    .collect();
                let messages = messages::history(c, &conv.id, page, &visible, limit)?;
                let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
                let mut reactions: HashMap<String, BTreeMap<String, Vec<String>>> = HashMap::new();
                for (mid, emoji, user_id, _) in message_changes::reactions_of(c, &ids)? {
                    reactions
                        .entry(mid)
                        .or_default()
                        .entry(emoji)
                        .or_default()
                        .push(user_id);
                }
                Ok(HistoryPage {
                    messages,
                    reactions,
                    total: conv.live_msg_count,
                    conversation_id: conv.id,
                })
            })
            .await
    }

    /// History of the direct conversation with another user; empty if there is none yet.
    pub async fn direct_history(
        &self,
        me: &User,
        other_ref: &str,
        before: Option<String>,
        after: Option<String>,
        limit: i64,
    ) -> Result<Option<HistoryPage>> {
        let other = self.find_user(other_ref).await?;
        let (a, b) = (me.id.clone(), other.id.clone());
        let conv = self
            .store
            .read(move |c| convs::get_direct(c, &a, &b))
            .await?;
        match conv {
            Some(conv) => Ok(Some(
                self.history(me, &conv.id, before, after, limit).await?,
            )),
            None => Ok(None),
        }
    }

    pub async fn message(&self, me: &User, conv_id: &str, msg_id: &str) -> Result<Message> {
        let (me, conv_id, msg_id) = (me.id.clone(), conv_id.to_owned(), msg_id.to_owned());
        self.store
            .read(move |c| {
                require_participant(c, &conv_id, &me)?;
                visible_message(c, &conv_id, &me, &msg_id)
            })
            .await
    }

    pub async fn edit(
        &self,
        me: &User,
        conv_id: &str,
        msg_id: &str,
        content: String,
        metadata: Option<Value>,
    ) -> Result<Message> {
        validate::max_len("content", &content, validate::MAX_CONTENT_LEN)?;
        if metadata.as_ref().is_some_and(|m| !m.is_object()) {
            return Err(Error::invalid("metadata must be an object"));
        }
        let (me, conv_id, msg_id) = (me.id.clone(), conv_id.to_owned(), msg_id.to_owned());
        self.store
            .write(move |c| {
                let (conv, _) = require_participant(c, &conv_id, &me)?;
                let mut m = visible_message(c, &conv.id, &me, &msg_id)?;
                if m.is_deleted() {
                    return Err(Error::not_found("Message"));
                }
                if m.sender_id != me {
                    return Err(Error::new(
                        ErrorCode::NotSender,
                        "Only the sender may edit a message",
                    ));
                }
                let metadata = metadata.unwrap_or_else(|| m.metadata.clone());
                edit_in(c, &mut m, &me, content, metadata)?;
                Ok(m)
            })
            .await
    }

    /// Deletes a message, keeping a tombstone with every field so faces can render the deletion.
    pub async fn delete_message(&self, me: &User, conv_id: &str, msg_id: &str) -> Result<Message> {
        let (me, conv_id, msg_id) = (me.id.clone(), conv_id.to_owned(), msg_id.to_owned());
        self.store
            .write(move |c| {
                let (conv, _) = require_participant(c, &conv_id, &me)?;
                let mut m = visible_message(c, &conv.id, &me, &msg_id)?;
                if m.is_deleted() {
                    return Err(Error::not_found("Message"));
                }
                if m.sender_id != me {
                    return Err(Error::new(
                        ErrorCode::NotSender,
                        "Only the sender may delete a message",
                    ));
                }
                delete_in(c, &mut m)?;
                Ok(m)
            })
            .await
    }

    /// Adds or removes the caller's reaction; answers the message's reactions.
    pub async fn react(
        &self,
        me: &User,
        conv_id: &str,
        msg_id: &str,
        emoji: String,
        add: bool,
    ) -> Result<Value> {
        validate::non_blank("emoji", &emoji)?;
        validate::max_len("emoji", &emoji, validate::MAX_EMOJI_LEN)?;
        let (me, conv_id, msg_id) = (me.id.clone(), conv_id.to_owned(), msg_id.to_owned());
        self.store
            .write(move |c| {
                let (conv, _) = require_participant(c, &conv_id, &me)?;
                let mut m = visible_message(c, &conv.id, &me, &msg_id)?;
                if m.is_deleted() {
                    return Err(Error::not_found("Message"));
                }
                react_in(c, &mut m, &me, &emoji, add)?;
                Ok(payload::to_value(&payload::reactions(
                    &reactions::of_message(c, &m.id)?,
                )))
            })
            .await
    }

    /// Records delivery receipts for messages of one conversation; answers how many were new.
    pub async fn mark_delivered(&self, me: &User, conv_id: &str, ids: Vec<String>) -> Result<u64> {
        if ids.len() > 200 {
            return Err(Error::invalid("at most 200 messageIds"));
        }
        let (me, conv_id) = (me.id.clone(), conv_id.to_owned());
        self.store
            .write(move |c| {
                let (conv, _) = require_participant(c, &conv_id, &me)?;
                let now = now_ms();
                let mut n = 0;
                for id in &ids {
                    let m = visible_message(c, &conv.id, &me, id)?;
                    if messages::mark_delivered(c, &m.id, &me, now)? {
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await
    }
}

/// The other participant of a direct conversation, as a user.
fn peer_user(c: &mut dyn SqlConn, conv_id: &str, me: &str) -> Result<Option<User>> {
    match participants::peer_of(c, conv_id, me)? {
        Some(id) => imsync_store::repo::users::get(c, &id),
        None => Ok(None),
    }
}

/// Replaces a message's content and metadata as an edit by `editor`, inside a write.
pub(crate) fn edit_in(
    c: &mut dyn SqlConn,
    m: &mut Message,
    editor: &str,
    content: String,
    metadata: Value,
) -> Result<()> {
    let now = now_ms();
    m.content = content;
    m.metadata = metadata;
    m.edited_at = Some(now);
    m.edited_by = Some(editor.to_owned());
    m.updated_at = convs::next_touch_ms(c, &m.conversation_id, now)?;
    let e = events::append(
        c,
        &EventData::MessageEdit(payload::message_edit(m)),
        Audience::Conversation(m.conversation_id.clone()),
        Some(&m.conversation_id),
        now,
    )?;
    m.version = e.seq;
    messages::save(c, m)
}

pub(crate) fn delete_in(c: &mut dyn SqlConn, m: &mut Message) -> Result<()> {
    let now = now_ms();
    let stamp = convs::next_touch_ms(c, &m.conversation_id, now)?;
    m.deleted_at = Some(stamp);
    m.updated_at = stamp;
    let e = events::append(
        c,
        &EventData::MessageDelete(payload::message_delete(m)),
        Audience::Conversation(m.conversation_id.clone()),
        Some(&m.conversation_id),
        now,
    )?;
    m.version = e.seq;
    messages::save(c, m)?;
    convs::message_removed(c, &m.conversation_id)?;
    if let Some(pid) = &m.parent_id {
        if let Some(mut p) = messages::get(c, pid)? {
            p.reply_count = (p.reply_count - 1).max(0);
            p.updated_at = convs::next_touch_ms(c, &m.conversation_id, now)?;
            messages::save(c, &p)?;
        }
    }
    Ok(())
}

pub(crate) fn react_in(
    c: &mut dyn SqlConn,
    m: &mut Message,
    user_id: &str,
    emoji: &str,
    add: bool,
) -> Result<bool> {
    if reactions::is_present(c, &m.id, user_id, emoji)? == add {
        return Ok(false);
    }
    let now = now_ms();
    // The event goes first so the reaction row can carry its seq; its snapshot is the message's
    // reactions as they will be once the row is written.
    let mut after = reactions::of_message(c, &m.id)?;
    if add {
        after.push(imsync_core::model::Reaction {
            user_id: user_id.to_owned(),
            emoji: emoji.to_owned(),
            seq: 0,
            created_at: now,
            removed: false,
        });
    } else {
        after.retain(|r| !(r.user_id == user_id && r.emoji == emoji));
    }
    let data = EventData::MessageReaction(MessageReaction {
        action: if add {
            ReactionAction::Add
        } else {
            ReactionAction::Remove
        },
        conversation_id: m.conversation_id.clone(),
        created_seq: m.event_seq,
        emoji: emoji.to_owned(),
        id: m.id.clone(),
        message_id: m.id.clone(),
        reactions: payload::reactions(&after),
        user_id: user_id.to_owned(),
    });
    let e = events::append(
        c,
        &data,
        Audience::Conversation(m.conversation_id.clone()),
        Some(&m.conversation_id),
        now,
    )?;
    reactions::set(c, m, user_id, emoji, add, e.seq, now)?;
    m.updated_at = convs::next_touch_ms(c, &m.conversation_id, now)?;
    m.version = e.seq;
    messages::save(c, m)?;
    Ok(true)
}
