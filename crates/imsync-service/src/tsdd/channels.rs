//! Channels as the TangSengDaoDao face names them, and the reads that face makes of them.
//!
//! A person channel is a direct conversation, named by the peer's user id as the caller sees
//! it; a group channel is a group, named by its id. Reads here give every message by its dense
//! `msg_seq` with deletions as flags (tombstones included), filtered to what the caller could
//! see (membership intervals) and to after their cleared-history seq. Extra and reaction sync
//! read by event seqs, which are global, monotonic and never reused, so a client that keeps the
//! largest one it has seen never skips a change.

use crate::conversations::require_participant;
use crate::visibility::{Seen, Sight};
use crate::{resolve_user, Service};
use imsync_core::model::{Conversation, ConversationKind, Message, Participant, Reaction, User};
use imsync_core::{Error, Result, Seq};
use imsync_store::repo::participants::{self, Interval};
use imsync_store::repo::tsdd::channel_reads;
pub use imsync_store::repo::tsdd::channel_reads::ReactionRow;
use imsync_store::repo::tsdd::hidden_messages;
use imsync_store::repo::{conversations as convs, messages, reactions, users};
use imsync_store::SqlConn;
use std::collections::{HashMap, HashSet};

/// A channel as the client names it: the peer's user id (direct) or the group's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    pub kind: ConversationKind,
}

impl std::hash::Hash for Channel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
        self.kind.as_str().hash(state);
    }
}

/// A message as one reader sees it.
#[derive(Debug, Clone)]
pub struct ChannelMessage {
    pub message: Message,
    /// The reader deleted it for themselves.
    pub hidden: bool,
    /// Present reactions, oldest first.
    pub reactions: Vec<Reaction>,
}

/// A page of channel messages, ascending by `msg_seq`.
#[derive(Debug, Clone, Default)]
pub struct ChannelPage {
    pub messages: Vec<ChannelMessage>,
    /// More messages exist beyond the page in the requested direction.
    pub more: bool,
    /// The caller is not (and was never) a member: the page is empty by rule.
    pub not_member: bool,
}

/// Which messages of a channel to read (TangSengDaoDao's `pull_mode` and seq bounds).
#[derive(Debug, Clone, Copy)]
pub struct ChannelRange {
    pub start: i64,
    pub end: i64,
    pub limit: i64,
    /// 1: newer (up), 0: older (down).
    pub pull_up: bool,
}

/// One entry of extra sync: a message whose extras (or whose hiding by the reader) changed.
#[derive(Debug, Clone)]
pub struct ExtraView {
    pub message: Message,
    pub hidden: bool,
    /// The sync key of this entry: the event seq of the change it reports.
    pub version: Seq,
}

/// Display names by user id, for rendering reactions and members.
pub type Names = HashMap<String, String>;

/// The conversation a channel names for the caller; `None` for a person channel with no
/// conversation yet.
pub(crate) fn resolve(
    c: &mut dyn SqlConn,
    me: &str,
    channel: &Channel,
) -> Result<Option<Conversation>> {
    match channel.kind {
        ConversationKind::Direct => {
            let peer = resolve_user(c, &channel.id).map_err(|_| Error::not_found("Channel"))?;
            if peer.id == me {
                return Err(Error::invalid("A person channel names another user"));
            }
            convs::get_direct(c, me, &peer.id)
        }
        ConversationKind::Group => match convs::get(c, &channel.id)? {
            Some(conv) if conv.kind == ConversationKind::Group => Ok(Some(conv)),
            _ => Err(Error::not_found("Channel")),
        },
    }
}

/// The conversation a channel names, with the caller's present participation.
pub(crate) fn resolve_member(
    c: &mut dyn SqlConn,
    me: &str,
    channel: &Channel,
) -> Result<(Conversation, Participant)> {
    let conv = resolve(c, me, channel)?.ok_or_else(Error::not_participant)?;
    require_participant(c, &conv.id, me)
}

/// The channel id of a conversation as `me` names it.
pub(crate) fn channel_id_of(c: &mut dyn SqlConn, conv: &Conversation, me: &str) -> Result<String> {
    Ok(match conv.kind {
        ConversationKind::Direct => {
            imsync_store::repo::participants::peer_of(c, &conv.id, me)?.unwrap_or_default()
        }
        ConversationKind::Group => conv.id.clone(),
    })
}

pub(crate) fn sees(intervals: &[Interval], event_seq: Seq) -> bool {
    intervals.iter().any(|i| i.contains(event_seq))
}

/// A message of the conversation by its integer id (creating event seq) that the caller could
/// see, or 404. `msg_seq`, when given (> 0), must match too.
pub(crate) fn visible_by_event_seq(
    c: &mut dyn SqlConn,
    conv_id: &str,
    me: &str,
    message_id: Seq,
    msg_seq: i64,
) -> Result<Message> {
    let m = channel_reads::message_by_event_seq(c, message_id)?
        .filter(|m| m.conversation_id == conv_id && (msg_seq <= 0 || m.msg_seq == msg_seq))
        .ok_or_else(|| Error::not_found("Message"))?;
    if !sees(&participants::intervals_in(c, me, conv_id)?, m.event_seq) {
        return Err(Error::not_found("Message"));
    }
    Ok(m)
}

/// Up to `want` messages with `msg_seq` in `(after, upto]` that `keep` accepts, read in chunks
/// from the newest (descending) or the oldest end.
pub(crate) fn collect_messages(
    c: &mut dyn SqlConn,
    conv_id: &str,
    mut after: i64,
    mut upto: i64,
    descending: bool,
    want: usize,
    keep: impl Fn(&Message) -> bool,
) -> Result<Vec<Message>> {
    let mut out = Vec::new();
    let chunk = (want as i64).clamp(16, 1024);
    while out.len() < want && after < upto {
        let batch = channel_reads::messages_range(c, conv_id, after, upto, descending, chunk)?;
        let full = batch.len() as i64 == chunk;
        for m in batch {
            if descending {
                upto = m.msg_seq - 1;
            } else {
                after = m.msg_seq;
            }
            if keep(&m) && out.len() < want {
                out.push(m);
            }
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

/// The messages as the reader may see them (see `visibility`), with their reactions and the
/// reader's hidden flags.
pub(crate) fn views(
    c: &mut dyn SqlConn,
    me: &str,
    sight: &Sight,
    list: Vec<Message>,
    names: &mut Names,
) -> Result<Vec<ChannelMessage>> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let hidden = hidden_messages::ids_in(c, me, sight.conv_id())?;
    let seen = sight.view(c, list)?;
    let mut out = Vec::with_capacity(seen.len());
    for Seen { message, reactions } in seen {
        let rs = match reactions {
            Some(rs) => rs,
            None => reactions::of_message(c, &message.id)?,
        };
        for r in &rs {
            add_name(c, names, &r.user_id)?;
        }
        add_name(c, names, &message.sender_id)?;
        out.push(ChannelMessage {
            hidden: hidden.contains(&message.id),
            reactions: rs,
            message,
        });
    }
    Ok(out)
}

pub(crate) fn add_name(c: &mut dyn SqlConn, names: &mut Names, user_id: &str) -> Result<()> {
    if !names.contains_key(user_id) {
        let name = users::get(c, user_id)?.map(|u: User| u.display_name);
        names.insert(user_id.to_owned(), name.unwrap_or_default());
    }
    Ok(())
}

fn clamp_limit(limit: i64, default: i64, max: i64) -> i64 {
    if limit <= 0 {
        default
    } else {
        limit.min(max)
    }
}

impl Service {
    /// Messages of a channel by seq range (TangSengDaoDao `/v1/message/channel/sync`).
    pub async fn channel_messages(
        &self,
        me: &User,
        channel: Channel,
        range: ChannelRange,
    ) -> Result<(ChannelPage, Names)> {
        let me = me.id.clone();
        self.store
            .read(move |c| {
                let mut names = Names::new();
                let Some(conv) = resolve(c, &me, &channel)? else {
                    return Ok((ChannelPage::default(), names));
                };
                let Some(p) = participants::get(c, &conv.id, &me)? else {
                    let page = ChannelPage {
                        not_member: true,
                        ..Default::default()
                    };
                    return Ok((page, names));
                };
                let sight = Sight::of(c, &me, &conv.id)?;
                let limit = clamp_limit(range.limit, 100, 10_000);
                let want = limit as usize + 1;
                let floor = p.cleared_seq;
                let last = conv.last_msg_seq;
                let keep = |m: &Message| sight.sees_message(m);
                let (mut list, descending) = if range.start == 0 && range.end == 0 {
                    let list = collect_messages(c, &conv.id, floor, last, true, want, keep)?;
                    (list, true)
                } else if range.pull_up {
                    let after = floor.max(range.start - 1);
                    let upto = if range.end == 0 { last } else { range.end - 1 };
                    let list = collect_messages(c, &conv.id, after, upto, false, want, keep)?;
                    (list, false)
                } else if range.end > range.start {
                    (Vec::new(), true)
                } else {
                    let after = floor.max(range.end);
                    let list = collect_messages(c, &conv.id, after, range.start, true, want, keep)?;
                    (list, true)
                };
                let mut more = list.len() > limit as usize;
                list.truncate(limit as usize);
                if range.start == 0 && range.end == 0 && range.pull_up {
                    // The newest messages were asked for: nothing is newer.
                    more = false;
                }
                if descending {
                    list.reverse();
                }
                let messages = views(c, &me, &sight, list, &mut names)?;
                let page = ChannelPage {
                    messages,
                    more,
                    not_member: false,
                };
                Ok((page, names))
            })
            .await
    }

    /// Messages of a channel whose extras changed after `extra_version` (or the newest `limit`
    /// when it is 0), ascending by their change's seq (`/v1/message/extra/sync`).
    pub async fn message_extras(
        &self,
        me: &User,
        channel: Channel,
        extra_version: Seq,
        limit: i64,
    ) -> Result<Vec<ExtraView>> {
        let me = me.id.clone();
        self.store
            .read(move |c| {
                let Some(conv) = resolve(c, &me, &channel)? else {
                    return Ok(Vec::new());
                };
                let p = participants::get(c, &conv.id, &me)?.ok_or_else(Error::not_participant)?;
                let intervals = participants::intervals_in(c, &me, &conv.id)?;
                let limit = clamp_limit(limit, 100, 10_000);
                let upto = p.left_seq.unwrap_or(i64::MAX);
                let descending = extra_version <= 0;
                let after = extra_version.max(0);
                // Changes to the messages themselves, in chunks past invisible ones.
                let mut changed: Vec<(Seq, Message)> = Vec::new();
                let (mut lo, mut hi) = (after, upto);
                loop {
                    let batch =
                        channel_reads::changed_extras(c, &conv.id, lo, hi, descending, limit)?;
                    let full = batch.len() as i64 == limit;
                    for m in batch {
                        if descending {
                            hi = m.version - 1;
                        } else {
                            lo = m.version;
                        }
                        // Changes after a former member's removal are past `upto` already.
                        if sees(&intervals, m.event_seq) && (changed.len() as i64) < limit {
                            changed.push((m.version, m));
                        }
                    }
                    if !full || changed.len() as i64 >= limit {
                        break;
                    }
                }
                // The caller's own deletions for themselves.
                for (id, seq) in
                    hidden_messages::range(c, &me, &conv.id, after, upto, descending, limit)?
                {
                    if let Some(m) = messages::get(c, &id)? {
                        changed.push((seq, m));
                    }
                }
                changed.sort_by_key(|(k, _)| *k);
                if descending {
                    changed.reverse();
                }
                changed.truncate(limit as usize);
                changed.sort_by_key(|(k, _)| *k);
                let hidden: HashSet<String> = hidden_messages::ids_in(c, &me, &conv.id)?;
                Ok(changed
                    .into_iter()
                    .map(|(version, message)| ExtraView {
                        hidden: hidden.contains(&message.id),
                        version,
                        message,
                    })
                    .collect())
            })
            .await
    }

    /// Reaction rows of a channel after `seq` ascending, or the newest `limit` descending when
    /// `seq <= 0` (`/v1/reaction/sync`).
    pub async fn channel_reactions(
        &self,
        me: &User,
        channel: Channel,
        seq: Seq,
        limit: i64,
    ) -> Result<(Vec<ReactionRow>, Names)> {
        let me = me.id.clone();
        self.store
            .read(move |c| {
                let mut names = Names::new();
                let Some(conv) = resolve(c, &me, &channel)? else {
                    return Ok((Vec::new(), names));
                };
                let p = participants::get(c, &conv.id, &me)?.ok_or_else(Error::not_participant)?;
                let intervals = participants::intervals_in(c, &me, &conv.id)?;
                let limit = clamp_limit(limit, 100, 1000);
                let descending = seq <= 0;
                let (mut lo, mut hi) = (seq.max(0), p.left_seq.unwrap_or(i64::MAX));
                let mut out = Vec::new();
                loop {
                    let batch =
                        channel_reads::reactions_range(c, &conv.id, lo, hi, descending, limit)?;
                    let full = batch.len() as i64 == limit;
                    for row in batch {
                        if descending {
                            hi = row.reaction.seq - 1;
                        } else {
                            lo = row.reaction.seq;
                        }
                        if sees(&intervals, row.message_event_seq) && (out.len() as i64) < limit {
                            out.push(row);
                        }
                    }
                    if !full || out.len() as i64 >= limit {
                        break;
                    }
                }
                for row in &out {
                    add_name(c, &mut names, &row.reaction.user_id)?;
                }
                Ok((out, names))
            })
            .await
    }
}
