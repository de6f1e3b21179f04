//! Conversation sync for the TangSengDaoDao face (`/v1/conversation/sync`).
//!
//! A conversation's `version` for a user is the seq of the newest event in it that the user can
//! see: the conversation's last shared event while they are a participant (the seq they left at
//! otherwise), or their newest private event about it (read pointer, pin/mute, extras, deletions
//! for themselves), whichever is larger. Event seqs are global and commit in order, so a client
//! that asks with the largest version it holds gets exactly the conversations that changed since,
//! with nothing skipped. The candidates of an incremental sync come from the index of changed
//! conversations and the user's private stream, so its cost follows what changed.

use crate::tsdd::channels::{
    self, channel_id_of, collect_messages, Channel, ChannelMessage, Names,
};
use crate::visibility::Sight;
use crate::Service;
use imsync_core::model::{Conversation, ConversationKind, Message, Participant, User};
use imsync_core::{Result, Seq};
use imsync_store::repo::tsdd::channel_reads;
use imsync_store::repo::tsdd::conversation_extras::{self, ConversationExtra};
use imsync_store::repo::{conversations as convs, messages, participants, users};
use imsync_store::SqlConn;
use std::collections::{HashMap, HashSet};

/// At most this many conversations per answer.
const MAX_CONVERSATIONS: usize = 1000;

#[derive(Debug, Clone)]
pub struct ConversationSyncRequest {
    /// 0 for everything, else the largest conversation version the client holds.
    pub version: Seq,
    /// The largest `msg_seq` the client holds, per channel.
    pub last_msg_seqs: HashMap<Channel, i64>,
    /// Recents per conversation, 1 to 100.
    pub msg_count: i64,
}

#[derive(Debug, Clone)]
pub struct SyncedConversation {
    pub conversation: Conversation,
    pub me: Participant,
    pub channel_id: String,
    pub version: Seq,
    pub unread: i64,
    /// Newest first.
    pub recents: Vec<ChannelMessage>,
    pub extra: Option<ConversationExtra>,
    /// The conversation's newest message, whatever its state.
    pub last_message: Option<Message>,
}

#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub conversation: Conversation,
    pub me: Participant,
    pub member_count: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ConversationSync {
    /// Newest version first.
    pub conversations: Vec<SyncedConversation>,
    /// Peers of the returned direct conversations, with the caller's participation there.
    pub users: Vec<(User, Participant)>,
    pub groups: Vec<GroupInfo>,
    pub names: Names,
}

/// The conversation's version as `p`'s user sees it.
pub(crate) fn version_of(conv: &Conversation, p: &Participant) -> Seq {
    p.left_seq.unwrap_or(conv.last_event_seq).max(p.private_seq)
}

/// Deleted from the user's list and no message since.
fn is_deleted(conv: &Conversation, extra: Option<&ConversationExtra>) -> bool {
    extra.is_some_and(|e| e.deleted_msg_seq > 0 && conv.last_msg_seq <= e.deleted_msg_seq)
}

fn candidates(
    c: &mut dyn SqlConn,
    me: &str,
    since: Seq,
) -> Result<Vec<(Conversation, Participant, Seq)>> {
    let mut out = Vec::new();
    if since <= 0 {
        for (conv, p) in channel_reads::all_of(c, me)? {
            let v = version_of(&conv, &p);
            out.push((conv, p, v));
        }
        out.sort_by_key(|x| std::cmp::Reverse(x.2));
        return Ok(out);
    }
    let mut seen = HashSet::new();
    for id in channel_reads::changed_for_user(c, me, since)? {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(p) = participants::get(c, &id, me)? else {
            continue;
        };
        let Some(conv) = convs::get(c, &id)? else {
            continue;
        };
        let v = version_of(&conv, &p);
        if v > since {
            out.push((conv, p, v));
        }
    }
    // The oldest changes first, so a capped answer never lets the client's version jump past a
    // change it did not get; the answer is then ordered newest first.
    out.sort_by_key(|x| x.2);
    Ok(out)
}

impl Service {
    pub async fn conversation_sync(
        &self,
        me: &User,
        req: ConversationSyncRequest,
    ) -> Result<ConversationSync> {
        let me = me.id.clone();
        let msg_count = if req.msg_count <= 0 {
            20
        } else {
            req.msg_count.min(100)
        } as usize;
        self.store
            .read(move |c| {
                let mut out = ConversationSync::default();
                let mut peers = HashSet::new();
                for (conv, p, version) in candidates(c, &me, req.version)? {
                    if out.conversations.len() >= MAX_CONVERSATIONS {
                        break;
                    }
                    let extra = conversation_extras::get(c, &me, &conv.id)?;
                    if is_deleted(&conv, extra.as_ref()) {
                        continue;
                    }
                    let channel_id = channel_id_of(c, &conv, &me)?;
                    let listed = req
                        .last_msg_seqs
                        .get(&Channel {
                            id: channel_id.clone(),
                            kind: conv.kind,
                        })
                        .copied()
                        .unwrap_or(0);
                    let floor = listed
                        .max(p.cleared_seq)
                        .max(extra.as_ref().map_or(0, |e| e.deleted_msg_seq));
                    let sight = Sight::of(c, &me, &conv.id)?;
                    // A former member's conversation ends at the last message they could see.
                    let mut conv = conv;
                    if let Some(last) = sight.last_msg_seq(c, conv.last_msg_seq)? {
                        conv.last_msg_seq = last;
                        conv.last_message_at =
                            messages::by_msg_seq(c, &conv.id, last)?.map(|m| m.created_at);
                    }
                    let recents = collect_messages(
                        c,
                        &conv.id,
                        floor,
                        conv.last_msg_seq,
                        true,
                        msg_count,
                        |m| sight.sees_message(m),
                    )?;
                    let recents = channels::views(c, &me, &sight, recents, &mut out.names)?;
                    let unread = if p.is_present() {
                        messages::unread_count(c, &conv.id, &me, p.read_msg_seq)?
                    } else {
                        0
                    };
                    let last_message = match recents.first() {
                        Some(v) if v.message.msg_seq == conv.last_msg_seq => {
                            Some(v.message.clone())
                        }
                        _ => match messages::by_msg_seq(c, &conv.id, conv.last_msg_seq)? {
                            Some(m) => sight.view(c, vec![m])?.pop().map(|s| s.message),
                            None => None,
                        },
                    };
                    match conv.kind {
                        ConversationKind::Direct => {
                            if peers.insert(channel_id.clone()) {
                                if let Some(u) = users::get(c, &channel_id)? {
                                    out.users.push((u, p.clone()));
                                }
                            }
                        }
                        ConversationKind::Group => out.groups.push(GroupInfo {
                            conversation: conv.clone(),
                            me: p.clone(),
                            member_count: participants::count_present(c, &conv.id)?,
                        }),
                    }
                    out.conversations.push(SyncedConversation {
                        conversation: conv,
                        me: p,
                        channel_id,
                        version,
                        unread,
                        recents,
                        extra: extra.filter(|e| e.version > 0),
                        last_message,
                    });
                }
                out.conversations
                    .sort_by_key(|s| std::cmp::Reverse(s.version));
                Ok(out)
            })
            .await
    }
}
