//! JSON views of the native face.

use imsync_core::model::{Conversation, Message, Participant, User};
use imsync_core::time::rfc3339;
use imsync_service::payload;
use imsync_service::{ConversationSummary, ConversationWithMembers};
use serde_json::{json, Value};

pub fn user(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "displayName": u.display_name,
        "role": u.role.as_str(),
        "agentType": u.agent_type,
        "avatarUrl": u.avatar_url,
        "bio": u.bio,
        "metadata": u.metadata,
        "createdAt": rfc3339(u.created_at),
    })
}

pub fn message(m: &Message) -> Value {
    payload::message(m)
}

pub fn conversation_row(c: &Conversation) -> Value {
    let mut v = payload::to_value(&payload::conversation(c, None));
    v["lastMsgSeq"] = json!(c.last_msg_seq);
    v
}

fn my_state(v: &mut Value, me: &Participant) {
    v["myRole"] = json!(me.role.as_str());
    v["pinned"] = json!(me.pinned);
    v["muted"] = json!(me.muted);
    v["pinnedAt"] = json!(me.pinned_at.map(rfc3339));
    v["lastReadSeq"] = json!(me.read_msg_seq);
}

pub fn conversation_detail(c: &ConversationWithMembers) -> Value {
    let mut v = conversation_row(&c.conversation);
    my_state(&mut v, &c.me);
    v["participants"] = c
        .members
        .iter()
        .map(|m| {
            json!({
                "id": m.user.id,
                "userId": m.user.id,
                "role": m.participant.role.as_str(),
                "joinedAt": rfc3339(m.participant.joined_at),
                "user": {
                    "id": m.user.id,
                    "username": m.user.username,
                    "displayName": m.user.display_name,
                    "role": m.user.role.as_str(),
                    "agentType": m.user.agent_type,
                },
            })
        })
        .collect();
    v
}

pub fn conversation_summary(s: &ConversationSummary) -> Value {
    let mut v = conversation_row(&s.conversation);
    my_state(&mut v, &s.me);
    v["unreadCount"] = json!(s.unread_count);
    v["memberCount"] = json!(s.member_count);
    v["lastMessage"] = s.last_message.as_ref().map(message).unwrap_or(Value::Null);
    if let Some(p) = &s.peer {
        v["otherUser"] = user(p);
    }
    v
}

pub fn group(c: &ConversationWithMembers) -> Value {
    json!({
        "groupId": c.conversation.id,
        "conversationId": c.conversation.id,
        "title": c.conversation.title,
        "description": c.conversation.description,
        "metadata": c.conversation.metadata,
        "myRole": c.me.role.as_str(),
        "createdAt": rfc3339(c.conversation.created_at),
        "members": c.members.iter().map(|m| payload::member(&m.user, m.participant.role.as_str())).collect::<Vec<_>>(),
    })
}
