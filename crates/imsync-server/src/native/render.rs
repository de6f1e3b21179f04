//! The data types of the native face's responses, and their construction from the service's
//! types. Each serializes to the JSON the Prismer SDK reads and describes itself in
//! `/openapi.json`; the interop test `openapi_check.py` holds the two together.

use imsync_core::model::{Conversation, Message, Participant, User};
use imsync_core::time::rfc3339;
use imsync_service::payload;
use imsync_service::{ConversationSummary, ConversationWithMembers};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A message as every native response and event carries it. Messages are rendered by the
/// service (a send renders its message once, for its event and its response alike), so this
/// type only describes that JSON; `Value` fields annotated with it hold the rendered message.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[schema(as = Message)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    id: String,
    conversation_id: String,
    sender_id: String,
    #[serde(rename = "type")]
    kind: String,
    content: String,
    metadata: Value,
    #[schema(required = true)]
    parent_id: Option<String>,
    /// Always `sent`.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    quoted_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    edited_at: Option<String>,
    /// Present (possibly null) exactly when `editedAt` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    edited_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted_at: Option<String>,
    /// Present once the message has replies.
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_count: Option<i64>,
    seq: i64,
    created_at: String,
    updated_at: String,
    /// In history: the message's reactions, user ids by emoji (`{}` when there are none), as
    /// the react call answers them.
    #[serde(skip_serializing_if = "Option::is_none")]
    reactions: Option<BTreeMap<String, Vec<String>>>,
}

pub fn message(m: &Message) -> Value {
    payload::message(m)
}

/// A message as history shows it: with its reactions.
pub fn message_with_reactions(
    m: &Message,
    reactions: Option<&BTreeMap<String, Vec<String>>>,
) -> Value {
    let mut v = payload::message(m);
    v["reactions"] = payload::to_value(&reactions.cloned().unwrap_or_default());
    v
}

/// What every view of a user shows besides its id (named `id` or `userId` by the view).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSummary {
    username: String,
    display_name: String,
    role: &'static str,
    #[schema(required = true)]
    agent_type: Option<String>,
    #[schema(required = true)]
    avatar_url: Option<String>,
}

pub fn user_summary(u: &User) -> UserSummary {
    UserSummary {
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        role: u.role.as_str(),
        agent_type: u.agent_type.clone(),
        avatar_url: u.avatar_url.clone(),
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = User)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    id: String,
    #[serde(flatten)]
    summary: UserSummary,
    #[schema(required = true)]
    bio: Option<String>,
    metadata: Value,
    created_at: String,
}

pub fn user(u: &User) -> UserView {
    UserView {
        id: u.id.clone(),
        summary: user_summary(u),
        bio: u.bio.clone(),
        metadata: u.metadata.clone(),
        created_at: rfc3339(u.created_at),
    }
}

/// A conversation without the caller's view of it.
#[derive(Serialize, ToSchema)]
#[schema(as = Conversation)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRow {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[schema(required = true)]
    title: Option<String>,
    #[schema(required = true)]
    description: Option<String>,
    metadata: Value,
    created_by: String,
    created_at: String,
    updated_at: String,
    archived: bool,
    #[schema(required = true)]
    last_message_at: Option<String>,
    last_msg_seq: i64,
}

/// A conversation's row as `me` sees it: `archived` is the caller's own archive.
pub fn conversation_row(c: &Conversation, me: &Participant) -> ConversationRow {
    ConversationRow {
        id: c.id.clone(),
        kind: c.kind.as_str(),
        title: c.title.clone(),
        description: c.description.clone(),
        metadata: c.metadata.clone(),
        created_by: c.created_by.clone(),
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
        archived: me.archived,
        last_message_at: c.last_message_at.map(rfc3339),
        last_msg_seq: c.last_msg_seq,
    }
}

/// The caller's own state in a conversation.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MyState {
    my_role: &'static str,
    pinned: bool,
    muted: bool,
    #[schema(required = true)]
    pinned_at: Option<String>,
    last_read_seq: i64,
}

fn my_state(me: &Participant) -> MyState {
    MyState {
        my_role: me.role.as_str(),
        pinned: me.pinned,
        muted: me.muted,
        pinned_at: me.pinned_at.map(rfc3339),
        last_read_seq: me.read_msg_seq,
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantUser {
    id: String,
    username: String,
    display_name: String,
    role: &'static str,
    #[schema(required = true)]
    agent_type: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantView {
    /// The user's id, as `userId`.
    id: String,
    user_id: String,
    role: &'static str,
    joined_at: String,
    user: ParticipantUser,
}

/// A conversation with the caller's state and its participants.
#[derive(Serialize, ToSchema)]
#[schema(as = ConversationDetail)]
#[serde(rename_all = "camelCase")]
pub struct ConversationDetail {
    #[serde(flatten)]
    row: ConversationRow,
    #[serde(flatten)]
    me: MyState,
    participants: Vec<ParticipantView>,
}

pub fn conversation_detail(c: &ConversationWithMembers) -> ConversationDetail {
    ConversationDetail {
        row: conversation_row(&c.conversation, &c.me),
        me: my_state(&c.me),
        participants: c
            .members
            .iter()
            .map(|m| ParticipantView {
                id: m.user.id.clone(),
                user_id: m.user.id.clone(),
                role: m.participant.role.as_str(),
                joined_at: rfc3339(m.participant.joined_at),
                user: ParticipantUser {
                    id: m.user.id.clone(),
                    username: m.user.username.clone(),
                    display_name: m.user.display_name.clone(),
                    role: m.user.role.as_str(),
                    agent_type: m.user.agent_type.clone(),
                },
            })
            .collect(),
    }
}

/// A conversation in the caller's list.
#[derive(Serialize, ToSchema)]
#[schema(as = ConversationSummary)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummaryView {
    #[serde(flatten)]
    row: ConversationRow,
    #[serde(flatten)]
    me: MyState,
    unread_count: i64,
    member_count: i64,
    #[schema(value_type = Option<MessageView>, required = true)]
    last_message: Value,
    /// Direct conversations only: the other participant.
    #[serde(skip_serializing_if = "Option::is_none")]
    other_user: Option<UserView>,
}

pub fn conversation_summary(s: &ConversationSummary) -> ConversationSummaryView {
    ConversationSummaryView {
        row: conversation_row(&s.conversation, &s.me),
        me: my_state(&s.me),
        unread_count: s.unread_count,
        member_count: s.member_count,
        last_message: s.last_message.as_ref().map(message).unwrap_or(Value::Null),
        other_user: s.peer.as_ref().map(user),
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = Member)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    user_id: String,
    username: String,
    display_name: String,
    /// The member's role in the group.
    role: String,
    /// The user's own role (human, agent, ...).
    user_role: String,
}

fn member(u: &User, role: &str) -> MemberView {
    let b = payload::member(u, role);
    MemberView {
        user_id: b.user_id,
        username: b.username,
        display_name: b.display_name,
        role: b.role,
        user_role: b.user_role,
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = Group)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    group_id: String,
    conversation_id: String,
    #[schema(required = true)]
    title: Option<String>,
    #[schema(required = true)]
    description: Option<String>,
    metadata: Value,
    my_role: &'static str,
    created_at: String,
    members: Vec<MemberView>,
}

pub fn group(c: &ConversationWithMembers) -> GroupView {
    GroupView {
        group_id: c.conversation.id.clone(),
        conversation_id: c.conversation.id.clone(),
        title: c.conversation.title.clone(),
        description: c.conversation.description.clone(),
        metadata: c.conversation.metadata.clone(),
        my_role: c.me.role.as_str(),
        created_at: rfc3339(c.conversation.created_at),
        members: c
            .members
            .iter()
            .map(|m| member(&m.user, m.participant.role.as_str()))
            .collect(),
    }
}
