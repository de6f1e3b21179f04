//! Conversations and membership. Membership changes write their events before they take effect
//! where the leaving user must see them (`participant.remove`), and after where the joining user
//! must (`participant.add`, preceded by a private `conversation.create` snapshot).

use crate::{payload, resolve_user, Service};
use imsync_core::event::{
    ArchiveChange, EventData, MemberBody, ParticipantRemove, PrivateSettings, ReadPointer,
    ReadReceipt,
};
use imsync_core::model::{
    Audience, Conversation, ConversationKind, Participant, ParticipantRole, User,
};
use imsync_core::{time::now_ms, validate, Error, Result};
use imsync_store::repo::{conversations as convs, events, messages, participants, users};
use imsync_store::SqlConn;
use serde_json::{json, Value};

#[derive(Debug, Clone, Default)]
pub struct ConversationPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub user: User,
    pub participant: Participant,
}

#[derive(Debug, Clone)]
pub struct ConversationWithMembers {
    pub conversation: Conversation,
    pub members: Vec<Member>,
    /// The caller's participation.
    pub me: Participant,
}

#[derive(Debug, Clone)]
pub struct ConversationSummary {
    pub conversation: Conversation,
    pub me: Participant,
    pub unread_count: i64,
    pub member_count: i64,
    /// For direct conversations: the other participant.
    pub peer: Option<User>,
    pub last_message: Option<imsync_core::model::Message>,
}

/// The caller's present participation, or the error a face shows for its absence.
pub(crate) fn require_participant(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
) -> Result<(Conversation, Participant)> {
    let conv = convs::get(c, conv_id)?.ok_or_else(|| Error::not_found("Conversation"))?;
    match participants::get(c, conv_id, user_id)? {
        Some(p) if p.is_present() => Ok((conv, p)),
        _ => Err(Error::not_participant()),
    }
}

fn require_manager(conv: &Conversation, p: &Participant) -> Result<()> {
    if conv.kind == ConversationKind::Group && !p.role.can_manage() {
        return Err(Error::forbidden(
            "Only the group's owner or an admin may do this",
        ));
    }
    Ok(())
}

pub(crate) fn members(c: &mut dyn SqlConn, conv_id: &str) -> Result<Vec<Member>> {
    let mut out = Vec::new();
    for p in participants::list_present(c, conv_id)? {
        if let Some(user) = users::get(c, &p.user_id)? {
            out.push(Member {
                user,
                participant: p,
            });
        }
    }
    Ok(out)
}

/// Conversations up to this size carry their members in snapshot events and share presence;
/// bigger ones (a public channel everyone joins) would make both cost as much as their size.
const SMALL_CONVERSATION: i64 = 256;

/// The members for a snapshot event, or none for a large conversation: the SDK accepts a
/// snapshot without `members`, and listing thousands of members in every join would make
/// joining a big channel cost as much as its size.
fn snapshot_members(c: &mut dyn SqlConn, conv_id: &str) -> Result<Option<Vec<MemberBody>>> {
    if participants::count_present_upto(c, conv_id, SMALL_CONVERSATION + 1)? > SMALL_CONVERSATION {
        return Ok(None);
    }
    Ok(Some(members_json(&members(c, conv_id)?)))
}

fn members_json(ms: &[Member]) -> Vec<MemberBody> {
    ms.iter()
        .map(|m| payload::member(&m.user, m.participant.role.as_str()))
        .collect()
}

/// Appends an event to a conversation's shared stream.
fn shared_event(c: &mut dyn SqlConn, conv_id: &str, data: EventData) -> Result<events::Appended> {
    events::append(
        c,
        &data,
        Audience::Conversation(conv_id.to_owned()),
        Some(conv_id),
        now_ms(),
    )
}

/// Appends an event private to one user about one of their conversations.
pub(crate) fn private_event(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    data: EventData,
) -> Result<events::Appended> {
    let e = events::append(
        c,
        &data,
        Audience::User(user_id.to_owned()),
        Some(conv_id),
        now_ms(),
    )?;
    participants::set_private_seq(c, conv_id, user_id, e.seq)?;
    Ok(e)
}

/// Sets a member's own archive flag, with a private `conversation.archive` or
/// `conversation.unarchive` to their devices when it changes. Answers whether it changed.
pub(crate) fn archive_in(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    archived: bool,
) -> Result<bool> {
    if !participants::set_archived(c, conv_id, user_id, archived)? {
        return Ok(false);
    }
    let change = ArchiveChange {
        conversation_id: conv_id.to_owned(),
        id: conv_id.to_owned(),
    };
    let data = if archived {
        EventData::ConversationArchive(change)
    } else {
        EventData::ConversationUnarchive(change)
    };
    private_event(c, conv_id, user_id, data)?;
    Ok(true)
}

/// Moves a member's read pointer forward to `msg_seq` (whose message is `last`), if it is not
/// there yet: the reader's own devices get the private `conversation.read`, and every member the
/// shared `message.read` receipt. Every face that moves the pointer forward goes through here, so
/// receipts do not depend on the face the reader uses. Answers whether the pointer moved.
pub(crate) fn read_forward(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    msg_seq: i64,
    last: Option<String>,
    now: i64,
) -> Result<bool> {
    if !participants::advance_read(c, conv_id, user_id, msg_seq)? {
        return Ok(false);
    }
    let read_at = imsync_core::time::rfc3339(now);
    private_event(
        c,
        conv_id,
        user_id,
        EventData::ConversationRead(ReadPointer {
            conversation_id: conv_id.to_owned(),
            last_read_message_id: last.clone(),
            read_at: read_at.clone(),
            read_msg_seq: msg_seq,
            user_id: user_id.to_owned(),
        }),
    )?;
    shared_event(
        c,
        conv_id,
        EventData::MessageRead(ReadReceipt {
            conversation_id: conv_id.to_owned(),
            last_read_message_id: last,
            read_at,
            read_by: user_id.to_owned(),
            read_msg_seq: msg_seq,
            user_id: user_id.to_owned(),
        }),
    )?;
    Ok(true)
}

/// The reader's private settings of a conversation, as its `conversation.settings` carries them.
pub(crate) fn private_settings(p: &Participant) -> PrivateSettings {
    PrivateSettings {
        cleared_seq: p.cleared_seq,
        conversation_id: p.conversation_id.clone(),
        muted: p.muted,
        pinned: p.pinned,
        pinned_at: p.pinned_at.map(imsync_core::time::rfc3339),
    }
}

/// Creates a conversation with its members, all present from its `conversation.create` event.
pub(crate) fn create(
    c: &mut dyn SqlConn,
    conv: Conversation,
    direct_key: Option<&str>,
    members: Vec<(User, ParticipantRole)>,
) -> Result<Conversation> {
    convs::insert(c, &conv, direct_key)?;
    let members_json: Vec<MemberBody> = members
        .iter()
        .map(|(u, r)| payload::member(u, r.as_str()))
        .collect();
    let e = shared_event(
        c,
        &conv.id,
        EventData::ConversationCreate(payload::conversation(&conv, Some(members_json))),
    )?;
    for (u, role) in &members {
        participants::join(c, &conv.id, &u.id, *role, e.seq, e.at, 0)?;
    }
    convs::get(c, &conv.id)?.ok_or_else(|| Error::internal("conversation vanished"))
}

/// Brings a user into a conversation: a private snapshot so they can build it, then the shared
/// `participant.add` from which they see its events.
pub(crate) fn add_member(
    c: &mut dyn SqlConn,
    conv: &Conversation,
    user: &User,
    role: ParticipantRole,
) -> Result<()> {
    let snapshot_members = snapshot_members(c, &conv.id)?.map(|mut ms| {
        ms.push(payload::member(user, role.as_str()));
        ms
    });
    let snapshot = events::append(
        c,
        &EventData::ConversationCreate(payload::conversation(conv, snapshot_members)),
        Audience::User(user.id.clone()),
        Some(&conv.id),
        now_ms(),
    )?;
    let e = shared_event(
        c,
        &conv.id,
        EventData::ParticipantAdd(payload::participant(&conv.id, user, role.as_str())),
    )?;
    participants::join(c, &conv.id, &user.id, role, e.seq, e.at, conv.last_msg_seq)?;
    participants::set_private_seq(c, &conv.id, &user.id, snapshot.seq)?;
    Ok(())
}

/// Ends a user's presence; the `participant.remove` event is the last one they see.
fn remove_member(c: &mut dyn SqlConn, conv: &Conversation, p: &Participant) -> Result<()> {
    if p.role == ParticipantRole::Owner {
        let rest: Vec<Participant> = participants::list_present(c, &conv.id)?
            .into_iter()
            .filter(|q| q.user_id != p.user_id)
            .collect();
        if !rest.iter().any(|q| q.role == ParticipantRole::Owner) {
            // A group keeps an owner while it has members: the longest-standing admin, else member.
            // The change is announced while the leaving owner is still there to see it too.
            if let Some(heir) = rest
                .iter()
                .filter(|q| q.role == ParticipantRole::Admin)
                .chain(rest.iter())
                .next()
            {
                participants::set_role(c, &conv.id, &heir.user_id, ParticipantRole::Owner)?;
                let ms = snapshot_members(c, &conv.id)?;
                shared_event(
                    c,
                    &conv.id,
                    EventData::ConversationUpdate(payload::conversation(conv, ms)),
                )?;
            }
        }
    }
    let e = shared_event(
        c,
        &conv.id,
        EventData::ParticipantRemove(ParticipantRemove {
            conversation_id: conv.id.clone(),
            role: p.role.as_str().to_owned(),
            user_id: p.user_id.clone(),
        }),
    )?;
    participants::leave(c, &conv.id, &p.user_id, e.seq)
}

fn check_title(title: &str) -> Result<()> {
    validate::non_blank("title", title)?;
    validate::max_len("title", title, validate::MAX_TITLE_LEN)
}

fn check_metadata(m: &Option<Value>) -> Result<()> {
    match m {
        Some(v) if !v.is_object() => Err(Error::invalid("metadata must be an object")),
        _ => Ok(()),
    }
}

impl Service {
    /// Creates a group owned by the caller with the given members (ids or usernames).
    pub async fn create_group(
        &self,
        me: &User,
        title: String,
        description: Option<String>,
        metadata: Option<Value>,
        member_refs: Vec<String>,
        public: bool,
    ) -> Result<ConversationWithMembers> {
        check_title(&title)?;
        if let Some(d) = &description {
            validate::max_len("description", d, validate::MAX_DESCRIPTION_LEN)?;
        }
        check_metadata(&metadata)?;
        if member_refs.len() > 1000 {
            return Err(Error::invalid("at most 1000 members at creation"));
        }
        let me = me.clone();
        self.store
            .write(move |c| {
                let mut members = vec![(me.clone(), ParticipantRole::Owner)];
                for r in &member_refs {
                    let u = resolve_user(c, r)?;
                    if !members.iter().any(|(m, _)| m.id == u.id) {
                        members.push((u, ParticipantRole::Member));
                    }
                }
                let now = now_ms();
                let conv = Conversation {
                    public,
                    title: Some(title),
                    description,
                    metadata: metadata.unwrap_or_else(|| json!({})),
                    ..Conversation::fresh(ConversationKind::Group, &me.id, now)
                };
                let conv = create(c, conv, None, members)?;
                with_members(c, conv, &me.id)
            })
            .await
    }

    /// The direct conversation between the caller and another user, created on first use.
    /// Either side that had left it is brought back. Answers whether it was created.
    pub async fn open_direct(
        &self,
        me: &User,
        other_ref: &str,
        metadata: Option<Value>,
    ) -> Result<(ConversationWithMembers, bool)> {
        check_metadata(&metadata)?;
        let me = me.clone();
        let other_ref = other_ref.to_owned();
        self.store
            .write(move |c| {
                let other = resolve_user(c, &other_ref)?;
                let (conv, created) = open_direct_in(c, &me, &other, metadata)?;
                Ok((with_members(c, conv, &me.id)?, created))
            })
            .await
    }

    pub async fn conversation(&self, me: &User, id: &str) -> Result<ConversationWithMembers> {
        let (me, id) = (me.id.clone(), id.to_owned());
        self.store
            .read(move |c| {
                let (conv, _) = require_participant(c, &id, &me)?;
                with_members(c, conv, &me)
            })
            .await
    }

    /// How `me` names a conversation on the channel-based faces: its kind and, for a direct
    /// one, the other member (`None` in a chat with oneself). What a connection needs to
    /// address a delivery, without the member list that [`Service::conversation`] loads, which
    /// for a large group is most of the work.
    pub async fn channel_of(
        &self,
        me: &User,
        id: &str,
    ) -> Result<(ConversationKind, Option<String>)> {
        let (me, id) = (me.id.clone(), id.to_owned());
        self.store
            .read(move |c| {
                let (conv, _) = require_participant(c, &id, &me)?;
                let peer = match conv.kind {
                    ConversationKind::Direct => participants::peer_of(c, &conv.id, &me)?,
                    ConversationKind::Group => None,
                };
                Ok((conv.kind, peer))
            })
            .await
    }

    /// The caller's conversations, most recently active first.
    pub async fn conversations(&self, me: &User) -> Result<Vec<ConversationSummary>> {
        let me = me.id.clone();
        self.store
            .read(move |c| {
                let mut out = Vec::new();
                for (conv, p) in participants::conversations_of(c, &me)? {
                    let unread_count = messages::unread_count(c, &conv.id, &me, p.read_msg_seq)?;
                    let member_count = participants::count_present(c, &conv.id)?;
                    let peer = match conv.kind {
                        ConversationKind::Direct => {
                            let other =
                                participants::peer_of(c, &conv.id, &me)?.unwrap_or_default();
                            users::get(c, &other)?
                        }
                        ConversationKind::Group => None,
                    };
                    let last_message = messages::last_live(c, &conv.id)?;
                    out.push(ConversationSummary {
                        member_count,
                        conversation: conv,
                        me: p,
                        unread_count,
                        peer,
                        last_message,
                    });
                }
                Ok(out)
            })
            .await
    }

    pub async fn update_conversation(
        &self,
        me: &User,
        id: &str,
        patch: ConversationPatch,
    ) -> Result<ConversationWithMembers> {
        if let Some(t) = &patch.title {
            check_title(t)?;
        }
        if let Some(d) = &patch.description {
            validate::max_len("description", d, validate::MAX_DESCRIPTION_LEN)?;
        }
        check_metadata(&patch.metadata)?;
        let (me, id) = (me.id.clone(), id.to_owned());
        self.store
            .write(move |c| {
                let (mut conv, p) = require_participant(c, &id, &me)?;
                require_manager(&conv, &p)?;
                if let Some(t) = patch.title {
                    conv.title = Some(t);
                }
                if let Some(d) = patch.description {
                    conv.description = Some(d);
                }
                if let Some(m) = patch.metadata {
                    conv.metadata = m;
                }
                conv.updated_at = now_ms();
                convs::update(c, &conv)?;
                let ms = snapshot_members(c, &conv.id)?;
                shared_event(
                    c,
                    &conv.id,
                    EventData::ConversationUpdate(payload::conversation(&conv, ms)),
                )?;
                with_members(c, conv, &me)
            })
            .await
    }

    /// Files the conversation away for the caller only, or brings it back: the other members'
    /// copies and everyone's right to write are untouched. Answers the caller's participation.
    pub async fn set_archived(
        &self,
        me: &User,
        id: &str,
        archived: bool,
    ) -> Result<(Conversation, Participant)> {
        let (me, id) = (me.id.clone(), id.to_owned());
        self.store
            .write(move |c| {
                let (conv, mut p) = require_participant(c, &id, &me)?;
                if archive_in(c, &conv.id, &me, archived)? {
                    p = participants::get(c, &conv.id, &me)?.ok_or_else(Error::not_participant)?;
                }
                Ok((conv, p))
            })
            .await
    }

    /// Moves the caller's read pointer to the newest message. Answers the pointer and the newest
    /// message id.
    pub async fn mark_read(&self, me: &User, id: &str) -> Result<(i64, Option<String>, i64)> {
        let (me, id) = (me.id.clone(), id.to_owned());
        self.store
            .write(move |c| {
                let (conv, _) = require_participant(c, &id, &me)?;
                let last = messages::by_msg_seq(c, &conv.id, conv.last_msg_seq)?.map(|m| m.id);
                let now = now_ms();
                read_forward(c, &conv.id, &me, conv.last_msg_seq, last.clone(), now)?;
                Ok((conv.last_msg_seq, last, now))
            })
            .await
    }

    /// Changes the caller's private settings of a conversation (pin, mute).
    pub async fn set_settings(
        &self,
        me: &User,
        id: &str,
        pinned: Option<bool>,
        muted: Option<bool>,
    ) -> Result<Participant> {
        let (me, id) = (me.id.clone(), id.to_owned());
        self.store
            .write(move |c| {
                let (conv, mut p) = require_participant(c, &id, &me)?;
                let before = (p.pinned, p.muted);
                if let Some(v) = pinned {
                    if v != p.pinned {
                        p.pinned = v;
                        p.pinned_at = v.then(now_ms);
                    }
                }
                if let Some(v) = muted {
                    p.muted = v;
                }
                if before != (p.pinned, p.muted) {
                    participants::save_settings(c, &p)?;
                    let e = private_event(
                        c,
                        &conv.id,
                        &me,
                        EventData::ConversationSettings(private_settings(&p)),
                    )?;
                    p.private_seq = e.seq;
                }
                Ok(p)
            })
            .await
    }

    /// The caller leaves; the conversation stays for the others.
    pub async fn leave(&self, me: &User, id: &str) -> Result<()> {
        let (me, id) = (me.id.clone(), id.to_owned());
        self.store
            .write(move |c| {
                let (conv, p) = require_participant(c, &id, &me)?;
                remove_member(c, &conv, &p)
            })
            .await
    }

    pub async fn add_participant(
        &self,
        me: &User,
        id: &str,
        user_ref: &str,
        role: Option<&str>,
    ) -> Result<ConversationWithMembers> {
        let role = match role {
            None => ParticipantRole::Member,
            Some(r) => match ParticipantRole::parse(r) {
                Some(ParticipantRole::Owner) | None => {
                    return Err(Error::invalid("role must be \"member\" or \"admin\""))
                }
                Some(r) => r,
            },
        };
        let (me, id, user_ref) = (me.id.clone(), id.to_owned(), user_ref.to_owned());
        self.store
            .write(move |c| {
                let (conv, p) = require_participant(c, &id, &me)?;
                if conv.kind == ConversationKind::Direct {
                    return Err(Error::invalid(
                        "A direct conversation has exactly two participants",
                    ));
                }
                require_manager(&conv, &p)?;
                let user = resolve_user(c, &user_ref)?;
                if participants::get(c, &conv.id, &user.id)?.is_some_and(|q| q.is_present()) {
                    return Err(Error::conflict("The user is already a participant"));
                }
                add_member(c, &conv, &user, role)?;
                let conv =
                    convs::get(c, &conv.id)?.ok_or_else(|| Error::not_found("Conversation"))?;
                with_members(c, conv, &me)
            })
            .await
    }

    /// Removes a participant: anyone may remove themselves; the owner and admins others (an
    /// admin cannot remove the owner).
    pub async fn remove_participant(&self, me: &User, id: &str, user_id: &str) -> Result<()> {
        let (me, id, user_id) = (me.id.clone(), id.to_owned(), user_id.to_owned());
        self.store
            .write(move |c| {
                let (conv, p) = require_participant(c, &id, &me)?;
                let target = match participants::get(c, &conv.id, &user_id)? {
                    Some(t) if t.is_present() => t,
                    _ => return Err(Error::not_found("Participant")),
                };
                if target.user_id != me {
                    if conv.kind == ConversationKind::Direct {
                        return Err(Error::forbidden(
                            "Nobody can be removed from a direct conversation",
                        ));
                    }
                    require_manager(&conv, &p)?;
                    if target.role == ParticipantRole::Owner && p.role != ParticipantRole::Owner {
                        return Err(Error::forbidden("Only an owner may remove an owner"));
                    }
                }
                remove_member(c, &conv, &target)
            })
            .await
    }
}

pub(crate) fn with_members(
    c: &mut dyn SqlConn,
    conversation: Conversation,
    me: &str,
) -> Result<ConversationWithMembers> {
    let members = members(c, &conversation.id)?;
    let me = participants::get(c, &conversation.id, me)?.ok_or_else(Error::not_participant)?;
    Ok(ConversationWithMembers {
        conversation,
        members,
        me,
    })
}

/// Opens (or creates) the direct conversation of two users inside a write.
pub(crate) fn open_direct_in(
    c: &mut dyn SqlConn,
    me: &User,
    other: &User,
    metadata: Option<Value>,
) -> Result<(Conversation, bool)> {
    if me.id == other.id {
        return Err(Error::invalid("A direct conversation needs another user"));
    }
    crate::contacts::check_not_blocked(c, &me.id, &other.id)?;
    if let Some(conv) = convs::get_direct(c, &me.id, &other.id)? {
        for u in [me, other] {
            if !participants::get(c, &conv.id, &u.id)?.is_some_and(|p| p.is_present()) {
                add_member(c, &conv, u, ParticipantRole::Member)?;
            }
        }
        let conv = convs::get(c, &conv.id)?.ok_or_else(|| Error::not_found("Conversation"))?;
        return Ok((conv, false));
    }
    let now = now_ms();
    let conv = Conversation {
        metadata: metadata.unwrap_or_else(|| json!({})),
        ..Conversation::fresh(ConversationKind::Direct, &me.id, now)
    };
    let key = convs::direct_key(&me.id, &other.id);
    let conv = create(
        c,
        conv,
        Some(&key),
        vec![
            (me.clone(), ParticipantRole::Member),
            (other.clone(), ParticipantRole::Member),
        ],
    )?;
    Ok((conv, true))
}

impl Service {
    /// Everyone who shares a small present conversation with the user: those told of their
    /// presence. Members of big channels ask for presence instead (`/api/im/presence/batch`).
    pub async fn peers(&self, me: &User) -> Result<Vec<String>> {
        let me = me.id.clone();
        self.store
            .read(move |c| participants::peers_of(c, &me, SMALL_CONVERSATION))
            .await
    }
}
