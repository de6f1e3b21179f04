//! Commands of the TangSengDaoDao face on channels and their messages: revoke, delete for
//! everyone or for oneself, edit, reaction toggle, read pointers, cleared history, removal from
//! the conversation list, conversation extras. Each is one write job whose events land in the
//! native sync feed: shared events for what everyone sees, private ones (which also move the
//! caller's `private_seq`, hence the conversation's version for them) for the caller's own state.

use crate::conversations::{private_event, private_settings, read_forward};
use crate::messages::{delete_in, react_in};
use crate::tsdd::channels::{self, resolve_member, visible_by_event_seq, Channel};
use crate::{NewMessage, SendOutcome, Service};
use imsync_core::event::{ConversationHide, EventData, MessageHide};
use imsync_core::model::{Conversation, ConversationKind, Message, ParticipantRole, User};
use imsync_core::{time::now_ms, validate, Error, ErrorCode, Result, Seq};
use imsync_store::repo::tsdd::conversation_extras;
pub use imsync_store::repo::tsdd::conversation_extras::ConversationExtra;
use imsync_store::repo::tsdd::{channel_reads, hidden_messages};
use imsync_store::repo::{conversations as convs, messages, participants, reactions};
use imsync_store::SqlConn;
use serde_json::{json, Map, Value};

/// The metadata key recording who revoked a message.
pub const REVOKED_BY_KEY: &str = "_revokedBy";

/// The client's extras of a conversation (`POST /v1/conversations/:id/:type/extra`).
#[derive(Debug, Clone, Default)]
pub struct ExtraPatch {
    pub browse_to: i64,
    pub keep_message_seq: i64,
    pub keep_offset_y: i64,
    pub draft: String,
}

/// One message to delete for oneself.
#[derive(Debug, Clone)]
pub struct MessageRef {
    pub channel: Channel,
    pub message_id: Seq,
    pub message_seq: i64,
}

/// Moves the user's read pointer forward to `msg_seq`, with its receipts.
fn read_to(c: &mut dyn SqlConn, conv: &Conversation, me: &str, msg_seq: i64) -> Result<()> {
    let last = messages::by_msg_seq(c, &conv.id, msg_seq)?.map(|m| m.id);
    read_forward(c, &conv.id, me, msg_seq, last, now_ms())?;
    Ok(())
}

impl Service {
    /// Sends to a channel; a person channel's conversation is created on first use.
    pub async fn send_to_channel(
        &self,
        me: &User,
        channel: Channel,
        new: NewMessage,
    ) -> Result<SendOutcome> {
        match channel.kind {
            ConversationKind::Direct => self.send_direct(me, &channel.id, new).await,
            ConversationKind::Group => {
                let (id, ch) = (me.id.clone(), channel.clone());
                self.store
                    .read(move |c| channels::resolve(c, &id, &ch))
                    .await?;
                self.send(me, &channel.id, new).await
            }
        }
    }

    /// Revokes a message: the service's delete plus the `revoked` flag. The sender may revoke
    /// their own; in a group the owner may revoke anyone's and an admin a member's.
    pub async fn revoke(
        &self,
        me: &User,
        channel: Channel,
        client_msg_no: String,
        message_id: Option<Seq>,
    ) -> Result<Message> {
        let me = me.id.clone();
        self.store
            .write(move |c| {
                let (conv, p) = resolve_member(c, &me, &channel)?;
                let found = match channel_reads::message_by_client_msg_no(c, &conv.id, &client_msg_no)? {
                    Some(m) => Some(m),
                    None => match message_id {
                        Some(id) => channel_reads::message_by_event_seq(c, id)?
                            .filter(|m| m.conversation_id == conv.id),
                        None => None,
                    },
                };
                let m = found
                    .filter(|m| message_id.is_none_or(|id| id <= 0 || id == m.event_seq))
                    .ok_or_else(|| Error::not_found("Message"))?;
                let mut m = visible_by_event_seq(c, &conv.id, &me, m.event_seq, 0)?;
                if m.is_deleted() {
                    return Err(Error::invalid("The message was already deleted"));
                }
                if m.sender_id != me {
                    let sender_role = participants::get(c, &conv.id, &m.sender_id)?
                        .map_or(ParticipantRole::Member, |s| s.role);
                    let allowed = conv.kind == ConversationKind::Group
                        && (p.role == ParticipantRole::Owner
                            || (p.role == ParticipantRole::Admin
                                && sender_role == ParticipantRole::Member));
                    if !allowed {
                        return Err(Error::forbidden(
                            "Only the sender, the group's owner or an admin may revoke this message",
                        ));
                    }
                }
                m.revoked = true;
                if let Some(o) = m.metadata.as_object_mut() {
                    o.insert(REVOKED_BY_KEY.into(), json!(me));
                }
                delete_in(c, &mut m)?;
                Ok(m)
            })
            .await
    }

    /// Deletes a message for everyone. In a group only its sender, the owner or an admin may;
    /// in a person channel either side may (as TangSengDaoDao allows).
    pub async fn delete_mutual(&self, me: &User, target: MessageRef) -> Result<Message> {
        let me = me.id.clone();
        self.store
            .write(move |c| {
                let (conv, p) = resolve_member(c, &me, &target.channel)?;
                let mut m =
                    visible_by_event_seq(c, &conv.id, &me, target.message_id, target.message_seq)?;
                if m.is_deleted() {
                    return Err(Error::invalid("The message was already deleted"));
                }
                if conv.kind == ConversationKind::Group && m.sender_id != me && !p.role.can_manage()
                {
                    return Err(Error::forbidden(
                        "Only the sender, the group's owner or an admin may delete this message",
                    ));
                }
                delete_in(c, &mut m)?;
                Ok(m)
            })
            .await
    }

    /// Deletes messages for the caller only; already hidden ones are left as they are.
    pub async fn hide_messages(&self, me: &User, targets: Vec<MessageRef>) -> Result<()> {
        if targets.is_empty() {
            return Err(Error::invalid("No messages given"));
        }
        if targets.len() > 500 {
            return Err(Error::invalid("At most 500 messages at once"));
        }
        let me = me.id.clone();
        self.store
            .write(move |c| {
                for t in &targets {
                    let (conv, _) = resolve_member(c, &me, &t.channel)?;
                    let m = visible_by_event_seq(c, &conv.id, &me, t.message_id, t.message_seq)?;
                    if hidden_messages::is_hidden(c, &me, &m.id)? {
                        continue;
                    }
                    let e = private_event(
                        c,
                        &conv.id,
                        &me,
                        EventData::MessageHide(MessageHide {
                            conversation_id: conv.id.clone(),
                            created_seq: m.event_seq,
                            message_id: m.id.clone(),
                            msg_seq: m.msg_seq,
                        }),
                    )?;
                    hidden_messages::hide(c, &me, &m.id, &conv.id, e.seq)?;
                }
                Ok(())
            })
            .await
    }

    /// Edits a message's content, merging `metadata` into its metadata. Only the sender may. An
    /// edit that changes nothing appends nothing.
    pub async fn edit_in_channel(
        &self,
        me: &User,
        target: MessageRef,
        content: String,
        metadata: Map<String, Value>,
    ) -> Result<Message> {
        validate::max_len("content", &content, validate::MAX_CONTENT_LEN)?;
        let me = me.id.clone();
        self.store
            .write(move |c| {
                let (conv, _) = resolve_member(c, &me, &target.channel)?;
                let mut m =
                    visible_by_event_seq(c, &conv.id, &me, target.message_id, target.message_seq)?;
                if m.is_deleted() {
                    return Err(Error::not_found("Message"));
                }
                if m.sender_id != me {
                    return Err(Error::new(
                        ErrorCode::NotSender,
                        "Only the sender may edit a message",
                    ));
                }
                let unchanged = m.content == content
                    && metadata.iter().all(|(k, v)| m.metadata.get(k) == Some(v));
                if unchanged {
                    return Ok(m);
                }
                // An edit through this face merges its keys into the metadata.
                let mut merged = m.metadata.clone();
                if let Some(o) = merged.as_object_mut() {
                    o.extend(metadata);
                }
                crate::messages::edit_in(c, &mut m, &me, content, merged)?;
                Ok(m)
            })
            .await
    }

    /// Toggles the caller's (emoji) reaction on a message; answers whether it is now present.
    pub async fn toggle_reaction(
        &self,
        me: &User,
        channel: Channel,
        message_id: Seq,
        emoji: String,
    ) -> Result<bool> {
        validate::non_blank("emoji", &emoji)?;
        validate::max_len("emoji", &emoji, validate::MAX_EMOJI_LEN)?;
        let me = me.id.clone();
        self.store
            .write(move |c| {
                let (conv, _) = resolve_member(c, &me, &channel)?;
                let mut m = visible_by_event_seq(c, &conv.id, &me, message_id, 0)?;
                if m.is_deleted() {
                    return Err(Error::not_found("Message"));
                }
                let add = !reactions::is_present(c, &m.id, &me, &emoji)?;
                react_in(c, &mut m, &me, &emoji, add)?;
                Ok(add)
            })
            .await
    }

    /// Sets the read pointer so that `unread` messages are left (0: all read); never backwards.
    pub async fn set_unread(&self, me: &User, channel: Channel, unread: i64) -> Result<()> {
        let me = me.id.clone();
        self.store
            .write(move |c| {
                let (conv, _) = resolve_member(c, &me, &channel)?;
                // WuKongIM's rule: more unread than there are messages leaves one unread.
                let last = conv.last_msg_seq;
                let target = match unread {
                    u if u <= 0 => last,
                    u if u > last => (last - 1).max(0),
                    u => last - u,
                };
                read_to(c, &conv, &me, target)
            })
            .await
    }

    /// Read receipts: moves the read pointer up to the newest of the given messages (integer
    /// ids or message ids).
    pub async fn mark_read_messages(
        &self,
        me: &User,
        channel: Channel,
        message_ids: Vec<String>,
    ) -> Result<()> {
        if message_ids.len() > 500 {
            return Err(Error::invalid("At most 500 message_ids"));
        }
        let me = me.id.clone();
        self.store
            .write(move |c| {
                let (conv, _) = resolve_member(c, &me, &channel)?;
                let mut newest = 0;
                for id in &message_ids {
                    let m = match id.trim().parse::<i64>() {
                        Ok(seq) => visible_by_event_seq(c, &conv.id, &me, seq, 0)?,
                        Err(_) => {
                            let m = messages::get(c, id)?
                                .filter(|m| m.conversation_id == conv.id)
                                .ok_or_else(|| Error::not_found("Message"))?;
                            visible_by_event_seq(c, &conv.id, &me, m.event_seq, 0)?
                        }
                    };
                    newest = newest.max(m.msg_seq);
                }
                read_to(c, &conv, &me, newest)
            })
            .await
    }

    /// Clears the caller's history up to `msg_seq` (forward only) and their unread.
    pub async fn clear_history(&self, me: &User, channel: Channel, msg_seq: i64) -> Result<()> {
        if msg_seq < 0 {
            return Err(Error::invalid("message_seq must not be negative"));
        }
        let me = me.id.clone();
        self.store
            .write(move |c| {
                let (conv, mut p) = resolve_member(c, &me, &channel)?;
                let seq = msg_seq.min(conv.last_msg_seq);
                if seq > p.cleared_seq {
                    p.cleared_seq = seq;
                    participants::save_settings(c, &p)?;
                    private_event(
                        c,
                        &conv.id,
                        &me,
                        EventData::ConversationSettings(private_settings(&p)),
                    )?;
                }
                read_to(c, &conv, &me, conv.last_msg_seq)
            })
            .await
    }

    /// Removes a conversation from the caller's list until its next message, and reads it.
    pub async fn delete_from_list(&self, me: &User, channel: Channel) -> Result<()> {
        let me = me.id.clone();
        self.store
            .write(move |c| {
                let conv =
                    channels::resolve(c, &me, &channel)?.ok_or_else(Error::not_participant)?;
                let p = participants::get(c, &conv.id, &me)?.ok_or_else(Error::not_participant)?;
                conversation_extras::set_deleted(c, &me, &conv.id, conv.last_msg_seq)?;
                private_event(
                    c,
                    &conv.id,
                    &me,
                    EventData::ConversationHide(ConversationHide {
                        conversation_id: conv.id.clone(),
                        deleted_msg_seq: conv.last_msg_seq,
                    }),
                )?;
                if p.is_present() {
                    read_to(c, &conv, &me, conv.last_msg_seq)?;
                }
                Ok(())
            })
            .await
    }

    /// Saves the caller's extras of a conversation; answers their new version.
    pub async fn set_conversation_extra(
        &self,
        me: &User,
        channel: Channel,
        patch: ExtraPatch,
    ) -> Result<Seq> {
        validate::max_len("draft", &patch.draft, validate::MAX_CONTENT_LEN)?;
        let me = me.id.clone();
        self.store
            .write(move |c| {
                let (conv, _) = resolve_member(c, &me, &channel)?;
                let e = private_event(
                    c,
                    &conv.id,
                    &me,
                    EventData::ConversationExtra(imsync_core::event::ConversationExtra {
                        browse_to: patch.browse_to,
                        conversation_id: conv.id.clone(),
                        draft: patch.draft.clone(),
                        keep_message_seq: patch.keep_message_seq,
                        keep_offset_y: patch.keep_offset_y,
                    }),
                )?;
                let extra = ConversationExtra {
                    conv_id: conv.id.clone(),
                    browse_to: patch.browse_to,
                    keep_message_seq: patch.keep_message_seq,
                    keep_offset_y: patch.keep_offset_y,
                    draft: patch.draft,
                    version: e.seq,
                    deleted_msg_seq: 0,
                };
                conversation_extras::save_extra(c, &me, &extra)?;
                Ok(e.seq)
            })
            .await
    }

    /// The caller's conversation extras changed after `version`, each with its channel.
    pub async fn conversation_extras_since(
        &self,
        me: &User,
        version: Seq,
    ) -> Result<Vec<(Channel, ConversationExtra)>> {
        let me = me.id.clone();
        self.store
            .read(move |c| {
                let mut out = Vec::new();
                for extra in conversation_extras::changed_since(c, &me, version)? {
                    if let Some(conv) = convs::get(c, &extra.conv_id)? {
                        let id = channels::channel_id_of(c, &conv, &me)?;
                        out.push((
                            Channel {
                                id,
                                kind: conv.kind,
                            },
                            extra,
                        ));
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Pin (stick) and mute of a channel for the caller.
    pub async fn set_channel_settings(
        &self,
        me: &User,
        channel: Channel,
        pinned: Option<bool>,
        muted: Option<bool>,
    ) -> Result<()> {
        let id = me.id.clone();
        let conv = self
            .store
            .read(move |c| resolve_member(c, &id, &channel).map(|(conv, _)| conv))
            .await?;
        self.set_settings(me, &conv.id, pinned, muted).await?;
        Ok(())
    }
}
