//! Typed queries, written once in portable SQL against [`crate::SqlConn`].

pub mod contacts;
pub mod conversations;
pub mod events;
pub mod files;
pub mod idempotency;
pub mod messages;
pub mod participants;
pub mod reactions;
pub mod schema;
pub mod tokens;
pub mod users;

// The faces' own tables and reads, one folder each.
pub mod rocketchat;
pub mod tsdd;
