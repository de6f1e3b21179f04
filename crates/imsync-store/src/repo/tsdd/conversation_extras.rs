//! Per-user state of a conversation that only the TangSengDaoDao face knows: the client's extras
//! (browse position, draft) with the seq of the private event that last changed them, and the
//! message seq at which the user deleted the conversation from their list.

use crate::{args, Row, SqlConn};
use imsync_core::{Result, Seq};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationExtra {
    pub conv_id: String,
    pub browse_to: i64,
    pub keep_message_seq: i64,
    pub keep_offset_y: i64,
    pub draft: String,
    /// The seq of the private event that last changed the extras; 0 if never set.
    pub version: Seq,
    /// The conversation is hidden from the list until a message after this seq arrives.
    pub deleted_msg_seq: i64,
}

const COLUMNS: &str =
    "conv_id, browse_to, keep_message_seq, keep_offset_y, draft, version, deleted_msg_seq";

fn from_row(r: &Row) -> ConversationExtra {
    ConversationExtra {
        conv_id: r.string(0),
        browse_to: r.i64(1),
        keep_message_seq: r.i64(2),
        keep_offset_y: r.i64(3),
        draft: r.string(4),
        version: r.i64(5),
        deleted_msg_seq: r.i64(6),
    }
}

pub fn get(c: &mut dyn SqlConn, user_id: &str, conv_id: &str) -> Result<Option<ConversationExtra>> {
    let sql =
        format!("SELECT {COLUMNS} FROM conversation_extras WHERE user_id = $1 AND conv_id = $2");
    Ok(c.query_opt(&sql, args![user_id, conv_id])?
        .map(|r| from_row(&r)))
}

/// Saves the client's extras and their version, leaving the deleted-at seq alone.
pub fn save_extra(c: &mut dyn SqlConn, user_id: &str, e: &ConversationExtra) -> Result<()> {
    c.execute(
        "INSERT INTO conversation_extras (user_id, conv_id, browse_to, keep_message_seq, \
         keep_offset_y, draft, version) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (user_id, conv_id) DO UPDATE SET browse_to = excluded.browse_to, \
         keep_message_seq = excluded.keep_message_seq, keep_offset_y = excluded.keep_offset_y, \
         draft = excluded.draft, version = excluded.version",
        args![
            user_id,
            &e.conv_id,
            e.browse_to,
            e.keep_message_seq,
            e.keep_offset_y,
            &e.draft,
            e.version
        ],
    )?;
    Ok(())
}

/// Records that the user deleted the conversation from their list at `msg_seq`.
pub fn set_deleted(c: &mut dyn SqlConn, user_id: &str, conv_id: &str, msg_seq: i64) -> Result<()> {
    c.execute(
        "INSERT INTO conversation_extras (user_id, conv_id, deleted_msg_seq) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, conv_id) DO UPDATE SET deleted_msg_seq = excluded.deleted_msg_seq",
        args![user_id, conv_id, msg_seq],
    )?;
    Ok(())
}

/// The user's extras changed after `version`, ascending.
pub fn changed_since(
    c: &mut dyn SqlConn,
    user_id: &str,
    version: Seq,
) -> Result<Vec<ConversationExtra>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM conversation_extras WHERE user_id = $1 AND version > $2 \
         ORDER BY version"
    );
    Ok(c.query(&sql, args![user_id, version.max(0)])?
        .iter()
        .map(from_row)
        .collect())
}
