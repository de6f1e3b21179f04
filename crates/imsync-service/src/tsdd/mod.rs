//! The TangSengDaoDao face's commands and reads: channels named as that face names them (a
//! peer's user id or a group id), channel and conversation sync by seqs and versions, and the
//! per-user state only that face has (message extras, hidden messages, conversation extras).
//! Everything here writes through the shared core and its event log, so the other faces see
//! the same conversations.

pub(crate) mod actions;
pub(crate) mod channels;
pub(crate) mod conversation_sync;

pub use actions::{ConversationExtra, ExtraPatch, MessageRef, REVOKED_BY_KEY};
pub use channels::{
    Channel, ChannelMessage, ChannelPage, ChannelRange, ExtraView, Names, ReactionRow,
};
pub use conversation_sync::{
    ConversationSync, ConversationSyncRequest, GroupInfo, SyncedConversation,
};
