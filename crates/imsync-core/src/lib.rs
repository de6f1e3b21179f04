//! The domain of imsync: types, error codes and the rules every face shares. No I/O here.
#![forbid(unsafe_code)]

pub mod error;
pub mod event;
pub mod ids;
pub mod model;
pub mod time;
pub mod validate;

pub use error::{Error, ErrorCode, Result};

/// A position in the global event log; the sync cursor.
pub type Seq = i64;
pub type UserId = String;
pub type ConversationId = String;
pub type MessageId = String;
