//! Typed queries, written once in portable SQL against [`crate::SqlConn`].

pub mod channel_reads;
pub mod conversation_extras;
pub mod conversations;
pub mod events;
pub mod hidden_messages;
pub mod idempotency;
pub mod message_changes;
pub mod messages;
pub mod participants;
pub mod reactions;
pub mod rooms;
pub mod schema;
pub mod tokens;
pub mod users;
