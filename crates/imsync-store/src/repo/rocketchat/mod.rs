//! The Rocket.Chat face's own reads: change feeds ordered by time, threads, rooms by name.

pub mod message_changes;
pub mod rooms;
