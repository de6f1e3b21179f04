//! Contacts: friend requests, friendships and blocks. A friendship is two rows, one per side, so
//! each side keeps its own remark; a block is one user's, and refuses the pair's direct
//! conversation whichever side tries.

use crate::{args, Row, SqlConn};
use imsync_core::Result;

/// A friend request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    Pending,
    Accepted,
    Rejected,
    /// Taken back by its sender.
    Cancelled,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Accepted => "accepted",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> RequestStatus {
        match s {
            "accepted" => RequestStatus::Accepted,
            "rejected" => RequestStatus::Rejected,
            "cancelled" => RequestStatus::Cancelled,
            _ => RequestStatus::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FriendRequest {
    pub id: String,
    pub from_user: String,
    pub to_user: String,
    pub reason: Option<String>,
    pub source: Option<String>,
    pub status: RequestStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

const REQUEST_COLUMNS: &str =
    "id, from_user, to_user, reason, source, status, created_at, updated_at";

fn request_from_row(r: &Row) -> FriendRequest {
    FriendRequest {
        id: r.string(0),
        from_user: r.string(1),
        to_user: r.string(2),
        reason: r.opt_string(3),
        source: r.opt_string(4),
        status: RequestStatus::parse(r.str(5)),
        created_at: r.i64(6),
        updated_at: r.i64(7),
    }
}

pub fn insert_request(c: &mut dyn SqlConn, r: &FriendRequest) -> Result<()> {
    c.execute(
        "INSERT INTO contact_requests (id, from_user, to_user, reason, source, status, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        args![
            &r.id,
            &r.from_user,
            &r.to_user,
            r.reason.as_deref(),
            r.source.as_deref(),
            r.status.as_str(),
            r.created_at,
            r.updated_at
        ],
    )?;
    Ok(())
}

pub fn get_request(c: &mut dyn SqlConn, id: &str) -> Result<Option<FriendRequest>> {
    let sql = format!("SELECT {REQUEST_COLUMNS} FROM contact_requests WHERE id = $1");
    Ok(c.query_opt(&sql, args![id])?.map(|r| request_from_row(&r)))
}

/// The pending request from one user to another, if any.
pub fn pending_between(
    c: &mut dyn SqlConn,
    from_user: &str,
    to_user: &str,
) -> Result<Option<FriendRequest>> {
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM contact_requests \
         WHERE from_user = $1 AND to_user = $2 AND status = 'pending'"
    );
    Ok(c.query_opt(&sql, args![from_user, to_user])?
        .map(|r| request_from_row(&r)))
}

/// Pending requests to (`incoming`) or from the user, newest first.
pub fn pending_of(
    c: &mut dyn SqlConn,
    user_id: &str,
    incoming: bool,
) -> Result<Vec<FriendRequest>> {
    let side = if incoming { "to_user" } else { "from_user" };
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM contact_requests \
         WHERE {side} = $1 AND status = 'pending' ORDER BY created_at DESC, id"
    );
    Ok(c.query(&sql, args![user_id])?
        .iter()
        .map(request_from_row)
        .collect())
}

pub fn set_request_status(
    c: &mut dyn SqlConn,
    id: &str,
    status: RequestStatus,
    at: i64,
) -> Result<()> {
    c.execute(
        "UPDATE contact_requests SET status = $2, updated_at = $3 WHERE id = $1",
        args![id, status.as_str(), at],
    )?;
    Ok(())
}

/// Ends every pending request between the two users, either way (a block or a friendship makes
/// them moot).
pub fn close_pending_between(
    c: &mut dyn SqlConn,
    a: &str,
    b: &str,
    status: RequestStatus,
    at: i64,
) -> Result<()> {
    c.execute(
        "UPDATE contact_requests SET status = $3, updated_at = $4 WHERE status = 'pending' \
         AND ((from_user = $1 AND to_user = $2) OR (from_user = $2 AND to_user = $1))",
        args![a, b, status.as_str(), at],
    )?;
    Ok(())
}

/// One side of a friendship.
#[derive(Debug, Clone, PartialEq)]
pub struct Friend {
    pub friend_id: String,
    pub remark: Option<String>,
    pub created_at: i64,
}

/// Makes the two users friends (both rows); a side that already exists is kept.
pub fn befriend(c: &mut dyn SqlConn, a: &str, b: &str, at: i64) -> Result<()> {
    for (x, y) in [(a, b), (b, a)] {
        c.execute(
            "INSERT INTO friends (user_id, friend_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, friend_id) DO NOTHING",
            args![x, y, at],
        )?;
    }
    Ok(())
}

/// Ends the friendship on both sides. Answers whether there was one.
pub fn unfriend(c: &mut dyn SqlConn, a: &str, b: &str) -> Result<bool> {
    let n = c.execute(
        "DELETE FROM friends WHERE (user_id = $1 AND friend_id = $2) \
         OR (user_id = $2 AND friend_id = $1)",
        args![a, b],
    )?;
    Ok(n > 0)
}

pub fn friend(c: &mut dyn SqlConn, user_id: &str, friend_id: &str) -> Result<Option<Friend>> {
    Ok(c.query_opt(
        "SELECT friend_id, remark, created_at FROM friends WHERE user_id = $1 AND friend_id = $2",
        args![user_id, friend_id],
    )?
    .map(|r| Friend {
        friend_id: r.string(0),
        remark: r.opt_string(1),
        created_at: r.i64(2),
    }))
}

/// The user's friends, oldest friendship first.
pub fn friends_of(c: &mut dyn SqlConn, user_id: &str) -> Result<Vec<Friend>> {
    Ok(c.query(
        "SELECT friend_id, remark, created_at FROM friends WHERE user_id = $1 \
         ORDER BY created_at, friend_id",
        args![user_id],
    )?
    .iter()
    .map(|r| Friend {
        friend_id: r.string(0),
        remark: r.opt_string(1),
        created_at: r.i64(2),
    })
    .collect())
}

pub fn set_remark(
    c: &mut dyn SqlConn,
    user_id: &str,
    friend_id: &str,
    remark: Option<&str>,
) -> Result<bool> {
    Ok(c.execute(
        "UPDATE friends SET remark = $3 WHERE user_id = $1 AND friend_id = $2",
        args![user_id, friend_id, remark],
    )? > 0)
}

/// Blocks `blocked_id` for `user_id`. Answers whether the block is new.
pub fn block(c: &mut dyn SqlConn, user_id: &str, blocked_id: &str, at: i64) -> Result<bool> {
    Ok(c.execute(
        "INSERT INTO blocks (user_id, blocked_id, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, blocked_id) DO NOTHING",
        args![user_id, blocked_id, at],
    )? > 0)
}

pub fn unblock(c: &mut dyn SqlConn, user_id: &str, blocked_id: &str) -> Result<bool> {
    Ok(c.execute(
        "DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2",
        args![user_id, blocked_id],
    )? > 0)
}

/// The users `user_id` blocked, with when, oldest first.
pub fn blocked_by(c: &mut dyn SqlConn, user_id: &str) -> Result<Vec<(String, i64)>> {
    Ok(c.query(
        "SELECT blocked_id, created_at FROM blocks WHERE user_id = $1 \
         ORDER BY created_at, blocked_id",
        args![user_id],
    )?
    .iter()
    .map(|r| (r.string(0), r.i64(1)))
    .collect())
}

/// Which of the pair blocked the other: `Some(true)` if `a` blocked `b`, `Some(false)` if only
/// `b` blocked `a`, `None` if neither did.
pub fn block_between(c: &mut dyn SqlConn, a: &str, b: &str) -> Result<Option<bool>> {
    Ok(c.query(
        "SELECT user_id FROM blocks WHERE (user_id = $1 AND blocked_id = $2) \
         OR (user_id = $2 AND blocked_id = $1)",
        args![a, b],
    )?
    .iter()
    .map(|r| r.str(0) == a)
    .reduce(|x, y| x || y))
}
