//! Rooms as Rocket.Chat clients see them: named groups (public channels and private groups),
//! joining a public one without an invitation, the default channel every account is in, and a
//! user's rooms and subscriptions changed since a time.
//!
//! The default channel (`ServiceConfig::default_channel`, `GENERAL` unless configured) is a
//! public group with that id, created by the first account that needs it. A new account joins it
//! at registration, through the hook this face installs on the service; an account made while
//! the channel was off joins the first time it reaches the Rocket.Chat face (login or any
//! authenticated call). An account that was in it once and left is not brought back.

use crate::conversations::{add_member, create, members, require_participant, with_members};
use crate::{ConversationWithMembers, Member, Service};
use imsync_core::model::{Conversation, ConversationKind, Participant, ParticipantRole, User};
use imsync_core::{time::now_ms, validate, Error, ErrorCode, Result};
use imsync_store::repo::rocketchat::rooms;
use imsync_store::repo::{conversations as convs, messages, participants, users};
use imsync_store::SqlConn;
use serde_json::json;

/// One of a user's rooms with what `rooms.get` / `subscriptions.get` render.
#[derive(Debug, Clone)]
pub struct RoomView {
    pub conversation: Conversation,
    /// The user's participation.
    pub me: Participant,
    /// Present members: all of them for a direct room, none (see `member_count`) for a group.
    pub members: Vec<Member>,
    pub member_count: i64,
    pub creator: Option<User>,
    pub unread: i64,
    /// The room's latest change in ms: metadata, membership or a message.
    pub updated_at: i64,
    /// The subscription's latest change in ms: the room's, or the user's own (join, read).
    pub subscription_updated_at: i64,
}

/// Rooms the user is in that changed after a time, and rooms they left after it.
#[derive(Debug, Clone, Default)]
pub struct RoomChanges {
    pub update: Vec<RoomView>,
    pub remove: Vec<(String, i64)>,
}

fn room_view(c: &mut dyn SqlConn, conv: Conversation, me: Participant) -> Result<RoomView> {
    let (members, member_count) = match conv.kind {
        ConversationKind::Direct => {
            let ms = members(c, &conv.id)?;
            let n = ms.len() as i64;
            (ms, n)
        }
        ConversationKind::Group => (Vec::new(), participants::count_present(c, &conv.id)?),
    };
    let creator = users::get(c, &conv.created_by)?;
    let unread = messages::unread_count(c, &conv.id, &me.user_id, me.read_msg_seq)?;
    let last_event_at = rooms::event_at(c, conv.last_event_seq)?.unwrap_or(0);
    let updated_at = conv
        .updated_at
        .max(conv.last_message_at.unwrap_or(0))
        .max(last_event_at)
        .max(conv.created_at);
    let private_at = match me.private_seq {
        0 => 0,
        seq => rooms::event_at(c, seq)?.unwrap_or(0),
    };
    Ok(RoomView {
        subscription_updated_at: updated_at.max(me.joined_at).max(private_at),
        conversation: conv,
        me,
        members,
        member_count,
        creator,
        unread,
        updated_at,
    })
}

fn check_room_name(name: &str) -> Result<()> {
    validate::non_blank("name", name)?;
    validate::max_len("name", name, validate::MAX_TITLE_LEN)
}

/// Puts the user in the default channel unless they were ever in it (one who left stays out);
/// creates the channel if nobody has yet. Runs inside a write.
pub(crate) fn join_default_channel_in(c: &mut dyn SqlConn, me: &User, id: &str) -> Result<()> {
    if participants::get(c, id, &me.id)?.is_some() {
        return Ok(());
    }
    match convs::get(c, id)? {
        Some(conv) => add_member(c, &conv, me, ParticipantRole::Member),
        None => {
            let conv = Conversation {
                id: id.to_owned(),
                public: true,
                title: Some(id.to_lowercase()),
                metadata: json!({ "default": true }),
                ..Conversation::fresh(ConversationKind::Group, &me.id, now_ms())
            };
            create(c, conv, None, vec![(me.clone(), ParticipantRole::Member)]).map(|_| ())
        }
    }
}

/// Registration's hook: every new account joins the default channel, in the same transaction.
pub(crate) struct DefaultChannel(pub String);

impl crate::RegistrationHook for DefaultChannel {
    fn on_register(&self, c: &mut dyn SqlConn, user: &User) -> Result<()> {
        join_default_channel_in(c, user, &self.0)
    }
}

impl Service {
    /// Puts the user in the default channel if they were never in it (accounts made while it was
    /// off, or before it existed); creates the channel if nobody has yet.
    pub async fn ensure_default_channel(&self, me: &User) -> Result<()> {
        let Some(id) = self
            .config
            .default_channel
            .clone()
            .filter(|s| !s.is_empty())
        else {
            return Ok(());
        };
        let (uid, cid) = (me.id.clone(), id.clone());
        let seen = self
            .store
            .read(move |c| Ok(participants::get(c, &cid, &uid)?.is_some()))
            .await?;
        if seen {
            return Ok(());
        }
        let me = me.clone();
        self.store
            .write(move |c| join_default_channel_in(c, &me, &id))
            .await
    }

    /// Creates a named group owned by the caller; the name must not be taken by another group.
    pub async fn create_room(
        &self,
        me: &User,
        name: String,
        public: bool,
        member_refs: Vec<String>,
    ) -> Result<ConversationWithMembers> {
        check_room_name(&name)?;
        if member_refs.len() > 1000 {
            return Err(Error::invalid("at most 1000 members at creation"));
        }
        let me = me.clone();
        self.store
            .write(move |c| {
                if rooms::group_by_title(c, &name)?.is_some() {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!("A room with name '{name}' exists"),
                    ));
                }
                let mut ms = vec![(me.clone(), ParticipantRole::Owner)];
                for r in &member_refs {
                    let u = crate::resolve_user(c, r)?;
                    if !ms.iter().any(|(m, _)| m.id == u.id) {
                        ms.push((u, ParticipantRole::Member));
                    }
                }
                let now = now_ms();
                let conv = Conversation {
                    public,
                    title: Some(name),
                    ..Conversation::fresh(ConversationKind::Group, &me.id, now)
                };
                let conv = create(c, conv, None, ms)?;
                with_members(c, conv, &me.id)
            })
            .await
    }

    /// A room by id or, failing that, a group by name.
    pub async fn find_room(&self, reference: &str) -> Result<Conversation> {
        let reference = reference.to_owned();
        self.store
            .read(move |c| {
                if let Some(conv) = convs::get(c, &reference)? {
                    return Ok(conv);
                }
                rooms::group_by_title(c, &reference)?
                    .ok_or_else(|| Error::not_found("Conversation"))
            })
            .await
    }

    /// Joins a public group (id or name). Joining a room one is in already changes nothing.
    pub async fn join_public(&self, me: &User, reference: &str) -> Result<ConversationWithMembers> {
        let (me, reference) = (me.clone(), reference.to_owned());
        self.store
            .write(move |c| {
                let conv = match convs::get(c, &reference)? {
                    Some(conv) => conv,
                    None => rooms::group_by_title(c, &reference)?
                        .ok_or_else(|| Error::not_found("Conversation"))?,
                };
                let present =
                    participants::get(c, &conv.id, &me.id)?.is_some_and(|p| p.is_present());
                if !present {
                    if conv.kind != ConversationKind::Group || !conv.public {
                        return Err(Error::forbidden("Only public rooms can be joined"));
                    }
                    add_member(c, &conv, &me, ParticipantRole::Member)?;
                }
                let conv =
                    convs::get(c, &conv.id)?.ok_or_else(|| Error::not_found("Conversation"))?;
                with_members(c, conv, &me.id)
            })
            .await
    }

    /// One of the user's rooms.
    pub async fn room(&self, me: &User, conv_id: &str) -> Result<RoomView> {
        let (me, conv_id) = (me.id.clone(), conv_id.to_owned());
        self.store
            .read(move |c| {
                let (conv, p) = require_participant(c, &conv_id, &me)?;
                room_view(c, conv, p)
            })
            .await
    }

    /// The user's rooms changed after `since` ms (all of them without `since`), and the rooms
    /// they left after it.
    pub async fn rooms_changed(&self, me: &User, since: Option<i64>) -> Result<RoomChanges> {
        let me = me.id.clone();
        self.store
            .read(move |c| {
                let mut out = RoomChanges::default();
                for (conv, p) in participants::conversations_of(c, &me)? {
                    let v = room_view(c, conv, p)?;
                    let changed = v.updated_at.max(v.subscription_updated_at);
                    if since.is_none_or(|s| changed > s) {
                        out.update.push(v);
                    }
                }
                if let Some(s) = since {
                    out.remove = rooms::left_since(c, &me, s)?;
                }
                Ok(out)
            })
            .await
    }
}
