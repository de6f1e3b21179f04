//! The TangSengDaoDao face's own tables and reads: message ranges by `msg_seq`, extras and
//! reactions by version, per-user hidden messages and conversation extras.

pub mod channel_reads;
pub mod conversation_extras;
pub mod hidden_messages;
