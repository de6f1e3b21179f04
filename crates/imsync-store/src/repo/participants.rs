use crate::{args, Row, SqlConn};
use imsync_core::model::{Conversation, Participant, ParticipantRole};
use imsync_core::{Result, Seq};

pub(crate) const COLUMNS: &str =
    "conv_id, user_id, role, joined_seq, joined_at, left_seq, read_msg_seq, \
                       pinned, pinned_at, muted, cleared_seq, private_seq, archived";

pub(crate) fn from_row(r: &Row) -> Participant {
    Participant {
        conversation_id: r.string(0),
        user_id: r.string(1),
        role: ParticipantRole::parse(r.str(2)).unwrap_or(ParticipantRole::Member),
        joined_seq: r.i64(3),
        joined_at: r.i64(4),
        left_seq: r.opt_i64(5),
        read_msg_seq: r.i64(6),
        pinned: r.bool(7),
        pinned_at: r.opt_i64(8),
        muted: r.bool(9),
        cleared_seq: r.i64(10),
        private_seq: r.i64(11),
        archived: r.bool(12),
    }
}

pub fn get(c: &mut dyn SqlConn, conv_id: &str, user_id: &str) -> Result<Option<Participant>> {
    let sql = format!("SELECT {COLUMNS} FROM participants WHERE conv_id = $1 AND user_id = $2");
    Ok(c.query_opt(&sql, args![conv_id, user_id])?
        .map(|r| from_row(&r)))
}

/// Present participants, oldest first.
pub fn list_present(c: &mut dyn SqlConn, conv_id: &str) -> Result<Vec<Participant>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM participants WHERE conv_id = $1 AND left_seq IS NULL \
         ORDER BY joined_seq, user_id"
    );
    Ok(c.query(&sql, args![conv_id])?
        .iter()
        .map(from_row)
        .collect())
}

pub fn count_present(c: &mut dyn SqlConn, conv_id: &str) -> Result<i64> {
    Ok(c.query_opt(
        "SELECT count(*) FROM participants WHERE conv_id = $1 AND left_seq IS NULL",
        args![conv_id],
    )?
    .map_or(0, |r| r.i64(0)))
}

/// The present participants, counted up to `limit` (so the count costs at most `limit` steps).
pub fn count_present_upto(c: &mut dyn SqlConn, conv_id: &str, limit: i64) -> Result<i64> {
    Ok(c.query_opt(
        "SELECT count(*) FROM (SELECT 1 FROM participants WHERE conv_id = $1 \
         AND left_seq IS NULL LIMIT $2) AS present",
        args![conv_id, limit],
    )?
    .map_or(0, |r| r.i64(0)))
}

/// The conversations a user is in now, with their participation, newest activity first.
pub fn conversations_of(
    c: &mut dyn SqlConn,
    user_id: &str,
) -> Result<Vec<(Conversation, Participant)>> {
    let conv_cols = super::conversations::COLUMNS
        .split(", ")
        .map(|col| format!("c.{}", col.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let part_cols = COLUMNS
        .split(", ")
        .map(|col| format!("p.{}", col.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {conv_cols}, {part_cols} FROM participants p \
         JOIN conversations c ON c.id = p.conv_id \
         WHERE p.user_id = $1 AND p.left_seq IS NULL \
         ORDER BY c.last_event_seq DESC"
    );
    let rows = c.query(&sql, args![user_id])?;
    let width = super::conversations::COLUMNS.split(", ").count();
    Ok(rows
        .into_iter()
        .map(|r| {
            let conv = super::conversations::from_row(&r);
            let part = from_row(&Row(r.0[width..].to_vec()));
            (conv, part)
        })
        .collect())
}

/// Adds a user (or brings them back) as of `joined_seq`, opening a membership interval. One who
/// comes back finds the conversation in their list again, not filed away.
pub fn join(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    role: ParticipantRole,
    joined_seq: Seq,
    at: i64,
    read_msg_seq: i64,
) -> Result<()> {
    let updated = c.execute(
        "UPDATE participants SET role = $3, joined_seq = $4, joined_at = $5, left_seq = NULL, \
         read_msg_seq = $6, archived = 0 WHERE conv_id = $1 AND user_id = $2",
        args![
            conv_id,
            user_id,
            role.as_str(),
            joined_seq,
            at,
            read_msg_seq
        ],
    )?;
    if updated == 0 {
        c.execute(
            "INSERT INTO participants (conv_id, user_id, role, joined_seq, joined_at, read_msg_seq) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            args![conv_id, user_id, role.as_str(), joined_seq, at, read_msg_seq],
        )?;
    }
    c.execute(
        "INSERT INTO memberships (user_id, conv_id, joined_seq) VALUES ($1, $2, $3)",
        args![user_id, conv_id, joined_seq],
    )?;
    Ok(())
}

/// Ends the user's presence as of `left_seq` (the seq of their `participant.remove`).
pub fn leave(c: &mut dyn SqlConn, conv_id: &str, user_id: &str, left_seq: Seq) -> Result<()> {
    c.execute(
        "UPDATE participants SET left_seq = $3 WHERE conv_id = $1 AND user_id = $2",
        args![conv_id, user_id, left_seq],
    )?;
    c.execute(
        "UPDATE memberships SET left_seq = $3 WHERE user_id = $2 AND conv_id = $1 \
         AND left_seq IS NULL",
        args![conv_id, user_id, left_seq],
    )?;
    Ok(())
}

pub fn set_role(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    role: ParticipantRole,
) -> Result<()> {
    c.execute(
        "UPDATE participants SET role = $3 WHERE conv_id = $1 AND user_id = $2",
        args![conv_id, user_id, role.as_str()],
    )?;
    Ok(())
}

/// Moves the read pointer forward only.
pub fn advance_read(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    msg_seq: i64,
) -> Result<bool> {
    Ok(c.execute(
        "UPDATE participants SET read_msg_seq = $3 WHERE conv_id = $1 AND user_id = $2 \
         AND read_msg_seq < $3",
        args![conv_id, user_id, msg_seq],
    )? > 0)
}

/// [`advance_read`] for a caller that does not need to know whether it moved (a sender's own
/// message), which lets the writer send it with its next statement.
pub fn advance_read_later(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    msg_seq: i64,
) -> Result<()> {
    c.execute_later(
        "UPDATE participants SET read_msg_seq = $3 WHERE conv_id = $1 AND user_id = $2 \
         AND read_msg_seq < $3",
        args![conv_id, user_id, msg_seq],
        None,
    )
}

pub fn save_settings(c: &mut dyn SqlConn, p: &Participant) -> Result<()> {
    c.execute(
        "UPDATE participants SET pinned = $3, pinned_at = $4, muted = $5, cleared_seq = $6 \
         WHERE conv_id = $1 AND user_id = $2",
        args![
            &p.conversation_id,
            &p.user_id,
            p.pinned,
            p.pinned_at,
            p.muted,
            p.cleared_seq
        ],
    )?;
    Ok(())
}

/// Files the conversation away for this user only, or brings it back. Answers whether it changed.
pub fn set_archived(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    archived: bool,
) -> Result<bool> {
    Ok(c.execute(
        "UPDATE participants SET archived = $3 WHERE conv_id = $1 AND user_id = $2 \
         AND archived <> $3",
        args![conv_id, user_id, archived],
    )? > 0)
}

pub fn set_private_seq(c: &mut dyn SqlConn, conv_id: &str, user_id: &str, seq: Seq) -> Result<()> {
    c.execute(
        "UPDATE participants SET private_seq = $3 WHERE conv_id = $1 AND user_id = $2",
        args![conv_id, user_id, seq],
    )?;
    Ok(())
}

/// A membership interval: the user saw the conversation's events with seq in
/// `[joined_seq, left_seq]` (open-ended while present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub conv_id: String,
    pub joined_seq: Seq,
    pub left_seq: Option<Seq>,
}

impl Interval {
    pub fn contains(&self, seq: Seq) -> bool {
        seq >= self.joined_seq && self.left_seq.is_none_or(|l| seq <= l)
    }
}

/// The user's intervals in one conversation.
pub fn intervals_in(c: &mut dyn SqlConn, user_id: &str, conv_id: &str) -> Result<Vec<Interval>> {
    Ok(c.query(
        "SELECT conv_id, joined_seq, left_seq FROM memberships WHERE user_id = $1 AND conv_id = $2 \
         ORDER BY joined_seq",
        args![user_id, conv_id],
    )?
    .iter()
    .map(|r| Interval {
        conv_id: r.string(0),
        joined_seq: r.i64(1),
        left_seq: r.opt_i64(2),
    })
    .collect())
}

/// The user's intervals that may hold events after `since`, in conversations changed after it.
pub fn open_intervals_since(
    c: &mut dyn SqlConn,
    user_id: &str,
    since: Seq,
) -> Result<Vec<Interval>> {
    Ok(c.query(
        "SELECT m.conv_id, m.joined_seq, m.left_seq FROM memberships m \
         JOIN conversations c ON c.id = m.conv_id \
         WHERE m.user_id = $1 AND (m.left_seq IS NULL OR m.left_seq > $2) \
         AND c.last_event_seq > $2",
        args![user_id, since],
    )?
    .iter()
    .map(|r| Interval {
        conv_id: r.string(0),
        joined_seq: r.i64(1),
        left_seq: r.opt_i64(2),
    })
    .collect())
}

/// Who was a participant of the conversation at event `seq`, each with the seq their
/// membership began.
pub fn members_at(c: &mut dyn SqlConn, conv_id: &str, seq: Seq) -> Result<Vec<(String, Seq)>> {
    Ok(c.query(
        "SELECT user_id, max(joined_seq) FROM memberships WHERE conv_id = $1 \
         AND joined_seq <= $2 AND (left_seq IS NULL OR left_seq >= $2) GROUP BY user_id",
        args![conv_id, seq],
    )?
    .iter()
    .map(|r| (r.string(0), r.i64(1)))
    .collect())
}

/// Everyone who shares a present conversation of at most `max_size` members with the user
/// (for presence fan-out).
pub fn peers_of(c: &mut dyn SqlConn, user_id: &str, max_size: i64) -> Result<Vec<String>> {
    // Each conversation's size is counted only up to max_size + 1.
    Ok(c.query(
        "SELECT DISTINCT q.user_id FROM participants p JOIN participants q ON q.conv_id = p.conv_id \
         WHERE p.user_id = $1 AND p.left_seq IS NULL AND q.left_seq IS NULL AND q.user_id <> $1 \
         AND (SELECT count(*) FROM (SELECT 1 FROM participants r WHERE r.conv_id = p.conv_id \
              AND r.left_seq IS NULL LIMIT $2) AS present) <= $3",
        args![user_id, max_size + 1, max_size],
    )?
    .iter()
    .map(|r| r.string(0))
    .collect())
}

/// The other participant of a direct conversation; one who left it is still named here.
pub fn peer_of(c: &mut dyn SqlConn, conv_id: &str, me: &str) -> Result<Option<String>> {
    Ok(c.query_opt(
        "SELECT user_id FROM participants WHERE conv_id = $1 AND user_id <> $2 LIMIT 1",
        args![conv_id, me],
    )?
    .map(|r| r.string(0)))
}
