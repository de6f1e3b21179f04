//! The Rocket.Chat face's own reads: change feeds ordered by time, threads, rooms by name, the
//! directory of public rooms.

pub mod directory;
pub mod message_changes;
pub mod rooms;
