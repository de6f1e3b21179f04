//! The Rocket.Chat face's directory and history reads: every account, the public rooms, a room's
//! history in a time window, its thread parents, and marking a room unread from a message.
//!
//! Reads of a room take a present participant and keep to what the one visibility rule lets
//! them see (`visibility`); the unread mark moves the same read pointer the other faces read
//! and announce it with the same private event as a read does.

use super::threads::{decorate, MessageView};
use crate::conversations::{private_event, require_participant};
use crate::visibility::Sight;
use crate::Service;
use imsync_core::event::{EventData, ReadPointer};
use imsync_core::model::{Conversation, ConversationKind, User};
use imsync_core::{time::now_ms, Error, Result};
use imsync_store::repo::messages::{self, Page};
use imsync_store::repo::rocketchat::{directory, message_changes};
use imsync_store::repo::{conversations as convs, participants, users};
use imsync_store::SqlConn;

/// Which part of a room's history to read, by creation time in ms (Rocket.Chat's `latest`,
/// `oldest` and `inclusive`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeWindow {
    pub latest: Option<i64>,
    pub oldest: Option<i64>,
    pub inclusive: bool,
}

/// Which thread parents a thread list shows (Rocket.Chat's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadFilter {
    All,
    /// Threads the caller started or replied to.
    Following,
    /// Threads with a reply from someone else after the caller's read pointer.
    Unread,
}

/// A public group as the directory lists it.
#[derive(Debug, Clone)]
pub struct PublicRoom {
    pub conversation: Conversation,
    pub member_count: i64,
    pub creator: Option<User>,
}

fn public_room(c: &mut dyn SqlConn, conversation: Conversation) -> Result<PublicRoom> {
    Ok(PublicRoom {
        member_count: participants::count_present(c, &conversation.id)?,
        creator: users::get(c, &conversation.created_by)?,
        conversation,
    })
}

impl Service {
    /// A page of the live accounts, oldest first, and how many there are.
    pub async fn users_page(&self, offset: i64, limit: i64) -> Result<(Vec<User>, i64)> {
        self.store
            .read(move |c| users::page(c, offset, limit))
            .await
    }

    /// A page of the public groups, oldest first, and how many there are.
    pub async fn public_rooms(&self, offset: i64, limit: i64) -> Result<(Vec<PublicRoom>, i64)> {
        self.store
            .read(move |c| {
                let (convs, total) = directory::public_rooms(c, offset, limit)?;
                let rooms = convs
                    .into_iter()
                    .map(|conv| public_room(c, conv))
                    .collect::<Result<Vec<_>>>()?;
                Ok((rooms, total))
            })
            .await
    }

    /// A public group by id, for callers that need not be in it.
    pub async fn public_room(&self, conv_id: &str) -> Result<PublicRoom> {
        let conv_id = conv_id.to_owned();
        self.store
            .read(move |c| {
                let conv = convs::get(c, &conv_id)?
                    .filter(|conv| conv.public && conv.kind == ConversationKind::Group)
                    .ok_or_else(|| Error::not_found("Conversation"))?;
                public_room(c, conv)
            })
            .await
    }

    /// The live messages of a room the caller may see inside `window`, newest first, `offset`
    /// of them skipped and at most `count` answered; with the room's live message count.
    pub async fn history_window(
        &self,
        me: &User,
        conv_id: &str,
        window: TimeWindow,
        offset: i64,
        count: i64,
    ) -> Result<(Vec<MessageView>, i64)> {
        let (me, conv_id) = (me.id.clone(), conv_id.to_owned());
        self.store
            .read(move |c| {
                let (conv, _) = require_participant(c, &conv_id, &me)?;
                let visible: Vec<_> = participants::intervals_in(c, &me, &conv.id)?
                    .into_iter()
                    .map(|i| (i.joined_seq, i.left_seq))
                    .collect();
                // Creation stamps grow strictly with the seq, so the window's newer end is a
                // seq bound and its older end a cut of the page.
                let page = match window.latest {
                    Some(ms) => {
                        let from = if window.inclusive {
                            ms.saturating_add(1)
                        } else {
                            ms
                        };
                        Page::Before(message_changes::first_seq_created_from(c, &conv.id, from)?)
                    }
                    None => Page::Latest,
                };
                let want = offset.max(0).saturating_add(count.max(0));
                let mut found = messages::history(c, &conv.id, page, &visible, want)?;
                found.reverse();
                let inside = |created: i64| match window.oldest {
                    Some(o) if window.inclusive => created >= o,
                    Some(o) => created > o,
                    None => true,
                };
                let page: Vec<_> = found
                    .into_iter()
                    .filter(|m| inside(m.created_at))
                    .skip(offset.max(0) as usize)
                    .take(count.max(0) as usize)
                    .collect();
                Ok((decorate(c, page)?, conv.live_msg_count))
            })
            .await
    }

    /// When the newest message the caller has read in the room was sent; `None` before any.
    pub async fn last_read_at(&self, me: &User, conv_id: &str) -> Result<Option<i64>> {
        let (me, conv_id) = (me.id.clone(), conv_id.to_owned());
        self.store
            .read(move |c| {
                let (conv, p) = require_participant(c, &conv_id, &me)?;
                Ok(messages::by_msg_seq(c, &conv.id, p.read_msg_seq)?.map(|m| m.created_at))
            })
            .await
    }

    /// The room's thread parents the caller may see, latest reply first.
    pub async fn thread_parents(
        &self,
        me: &User,
        conv_id: &str,
        filter: ThreadFilter,
    ) -> Result<Vec<MessageView>> {
        let (me, conv_id) = (me.id.clone(), conv_id.to_owned());
        self.store
            .read(move |c| {
                let (conv, p) = require_participant(c, &conv_id, &me)?;
                let sight = Sight::of(c, &me, &conv.id)?;
                let mut parents = directory::thread_parents(c, &conv.id)?;
                parents.retain(|m| sight.sees_message(m));
                if filter == ThreadFilter::Unread {
                    let unread = directory::unread_threads(c, &conv.id, &me, p.read_msg_seq)?;
                    parents.retain(|m| unread.contains(&m.id));
                }
                let mut views = decorate(c, parents)?;
                if filter == ThreadFilter::Following {
                    views.retain(|v| v.message.sender_id == me || v.replies.contains(&me));
                }
                Ok(views)
            })
            .await
    }

    /// Marks the room unread from the message `msg_id` on (a message of the room the caller may
    /// see): the read pointer goes back to just before it. Answers the room's id.
    pub async fn mark_unread_from(&self, me: &User, msg_id: &str) -> Result<String> {
        let (me, msg_id) = (me.id.clone(), msg_id.to_owned());
        self.store
            .write(move |c| {
                let m = messages::get(c, &msg_id)?
                    .filter(|m| !m.is_deleted())
                    .ok_or_else(|| Error::not_found("Message"))?;
                let (conv, _) = require_participant(c, &m.conversation_id, &me)?;
                if !Sight::of(c, &me, &conv.id)?.sees_message(&m) {
                    return Err(Error::not_found("Message"));
                }
                let seq = m.msg_seq - 1;
                if directory::rewind_read(c, &conv.id, &me, seq)? {
                    let last = messages::by_msg_seq(c, &conv.id, seq)?.map(|m| m.id);
                    private_event(
                        c,
                        &conv.id,
                        &me,
                        EventData::ConversationRead(ReadPointer {
                            conversation_id: conv.id.clone(),
                            last_read_message_id: last,
                            read_at: imsync_core::time::rfc3339(now_ms()),
                            read_msg_seq: seq,
                            user_id: me.clone(),
                        }),
                    )?;
                }
                Ok(conv.id)
            })
            .await
    }
}
