//! The Rocket.Chat face's commands and reads: rooms (named groups, the default channel),
//! subscriptions, and messages as feeds ordered by time, threads included. Everything here
//! writes through the shared core and its event log, so the other faces see the same rooms.

pub(crate) mod directory;
pub(crate) mod rooms;
pub(crate) mod threads;

pub use directory::{PublicRoom, ThreadFilter, TimeWindow};
pub use rooms::{RoomChanges, RoomView};
pub use threads::{ChangeSet, MessageView, ThreadChanges};

/// The face's hooks on registration: a new account joins the default channel, when there is one.
pub(crate) fn registration_hooks(
    config: &crate::ServiceConfig,
) -> Vec<std::sync::Arc<dyn crate::RegistrationHook>> {
    match config.default_channel.as_deref().filter(|s| !s.is_empty()) {
        Some(id) => vec![std::sync::Arc::new(rooms::DefaultChannel(id.to_owned()))],
        None => Vec::new(),
    }
}
