//! Contacts as the Prismer clients call them: friend requests, friends with a private remark, and
//! blocks. A block is the one part the rest of imsync obeys: neither side of a blocked pair can
//! open their direct conversation or send to it, on any face (they all go through
//! [`check_not_blocked`]).

use crate::{resolve_user, Service};
use imsync_core::model::User;
use imsync_core::{ids, time::now_ms, validate, Error, ErrorCode, Result};
use imsync_store::repo::contacts::{self, FriendRequest, RequestStatus};
use imsync_store::repo::users;
use imsync_store::SqlConn;

/// Longest request reason, source and remark.
const MAX_REASON_LEN: usize = 500;
const MAX_SOURCE_LEN: usize = 64;
const MAX_REMARK_LEN: usize = 64;

/// A friend request with both users.
#[derive(Debug, Clone)]
pub struct RequestView {
    pub request: FriendRequest,
    pub from: User,
    pub to: User,
}

/// A friend: the user, the caller's remark for them, and since when.
#[derive(Debug, Clone)]
pub struct FriendView {
    pub user: User,
    pub remark: Option<String>,
    pub since: i64,
}

/// What a friend request led to.
#[derive(Debug, Clone)]
pub enum RequestOutcome {
    /// Waiting for the other user (a repeated request answers the one already pending).
    Pending(RequestView),
    /// The other user had asked first: the two are friends now.
    Accepted(RequestView),
}

/// Refuses a direct conversation between two users when either blocked the other.
pub(crate) fn check_not_blocked(c: &mut dyn SqlConn, me: &str, other: &str) -> Result<()> {
    match contacts::block_between(c, me, other)? {
        None => Ok(()),
        Some(true) => Err(Error::new(
            ErrorCode::Blocked,
            "You blocked this user; unblock them first",
        )),
        Some(false) => Err(Error::new(
            ErrorCode::Blocked,
            "This user does not accept your messages",
        )),
    }
}

fn view(c: &mut dyn SqlConn, request: FriendRequest) -> Result<RequestView> {
    let from = users::get(c, &request.from_user)?.ok_or_else(|| Error::not_found("User"))?;
    let to = users::get(c, &request.to_user)?.ok_or_else(|| Error::not_found("User"))?;
    Ok(RequestView { request, from, to })
}

/// The views of requests whose users both still exist.
fn views(c: &mut dyn SqlConn, list: Vec<FriendRequest>) -> Result<Vec<RequestView>> {
    let mut out = Vec::with_capacity(list.len());
    for r in list {
        match view(c, r) {
            Ok(v) => out.push(v),
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn optional_text(name: &str, v: Option<String>, max: usize) -> Result<Option<String>> {
    match v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
        Some(s) => {
            validate::max_len(name, &s, max)?;
            Ok(Some(s))
        }
        None => Ok(None),
    }
}

impl Service {
    /// Asks another user (id or username) to be friends.
    pub async fn request_friend(
        &self,
        me: &User,
        other_ref: &str,
        reason: Option<String>,
        source: Option<String>,
    ) -> Result<RequestOutcome> {
        let reason = optional_text("reason", reason, MAX_REASON_LEN)?;
        let source = optional_text("source", source, MAX_SOURCE_LEN)?;
        let (me, other_ref) = (me.id.clone(), other_ref.to_owned());
        self.store
            .write(move |c| {
                let other = resolve_user(c, &other_ref)?;
                if other.id == me {
                    return Err(Error::invalid("You cannot befriend yourself"));
                }
                check_not_blocked(c, &me, &other.id)?;
                if contacts::friend(c, &me, &other.id)?.is_some() {
                    return Err(Error::conflict("You are friends already"));
                }
                let now = now_ms();
                if let Some(theirs) = contacts::pending_between(c, &other.id, &me)? {
                    contacts::set_request_status(c, &theirs.id, RequestStatus::Accepted, now)?;
                    contacts::befriend(c, &me, &other.id, now)?;
                    let theirs = contacts::get_request(c, &theirs.id)?
                        .ok_or_else(|| Error::internal("request vanished"))?;
                    return Ok(RequestOutcome::Accepted(view(c, theirs)?));
                }
                if let Some(mine) = contacts::pending_between(c, &me, &other.id)? {
                    return Ok(RequestOutcome::Pending(view(c, mine)?));
                }
                let request = FriendRequest {
                    id: ids::new_id(),
                    from_user: me.clone(),
                    to_user: other.id.clone(),
                    reason,
                    source,
                    status: RequestStatus::Pending,
                    created_at: now,
                    updated_at: now,
                };
                contacts::insert_request(c, &request)?;
                Ok(RequestOutcome::Pending(view(c, request)?))
            })
            .await
    }

    /// Pending requests to the caller (`incoming`) or from them, newest first.
    pub async fn friend_requests(&self, me: &User, incoming: bool) -> Result<Vec<RequestView>> {
        let me = me.id.clone();
        self.store
            .read(move |c| {
                let list = contacts::pending_of(c, &me, incoming)?;
                views(c, list)
            })
            .await
    }

    /// Accepts (the recipient) or declines a pending request; declining is also how its sender
    /// takes it back. Anyone else gets 404: a request is nobody else's business.
    pub async fn answer_friend_request(
        &self,
        me: &User,
        id: &str,
        accept: bool,
    ) -> Result<RequestView> {
        let (me, id) = (me.id.clone(), id.to_owned());
        self.store
            .write(move |c| {
                let r = contacts::get_request(c, &id)?
                    .filter(|r| r.to_user == me || r.from_user == me)
                    .ok_or_else(|| Error::not_found("Friend request"))?;
                if r.status != RequestStatus::Pending {
                    return Err(Error::conflict(format!(
                        "The request is {} already",
                        r.status.as_str()
                    )));
                }
                let now = now_ms();
                let status = match (accept, r.to_user == me) {
                    (true, true) => {
                        check_not_blocked(c, &r.to_user, &r.from_user)?;
                        contacts::befriend(c, &r.from_user, &r.to_user, now)?;
                        RequestStatus::Accepted
                    }
                    (true, false) => {
                        return Err(Error::forbidden("Only the recipient may accept a request"))
                    }
                    (false, true) => RequestStatus::Rejected,
                    (false, false) => RequestStatus::Cancelled,
                };
                contacts::set_request_status(c, &r.id, status, now)?;
                let r = contacts::get_request(c, &r.id)?
                    .ok_or_else(|| Error::internal("request vanished"))?;
                view(c, r)
            })
            .await
    }

    /// The caller's friends, oldest friendship first.
    pub async fn friends(&self, me: &User) -> Result<Vec<FriendView>> {
        let me = me.id.clone();
        self.store
            .read(move |c| {
                let mut out = Vec::new();
                for f in contacts::friends_of(c, &me)? {
                    if let Some(user) = users::get(c, &f.friend_id)? {
                        out.push(FriendView {
                            user,
                            remark: f.remark,
                            since: f.created_at,
                        });
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Ends a friendship, on both sides.
    pub async fn unfriend(&self, me: &User, other_ref: &str) -> Result<()> {
        let (me, other_ref) = (me.id.clone(), other_ref.to_owned());
        self.store
            .write(move |c| {
                let other = resolve_user(c, &other_ref)?;
                if !contacts::unfriend(c, &me, &other.id)? {
                    return Err(Error::not_found("Friend"));
                }
                Ok(())
            })
            .await
    }

    /// Sets (or, blank, clears) the caller's private remark for a friend.
    pub async fn set_remark(
        &self,
        me: &User,
        other_ref: &str,
        remark: Option<String>,
    ) -> Result<FriendView> {
        let remark = optional_text("remark", remark, MAX_REMARK_LEN)?;
        let (me, other_ref) = (me.id.clone(), other_ref.to_owned());
        self.store
            .write(move |c| {
                let other = resolve_user(c, &other_ref)?;
                if !contacts::set_remark(c, &me, &other.id, remark.as_deref())? {
                    return Err(Error::not_found("Friend"));
                }
                let f = contacts::friend(c, &me, &other.id)?
                    .ok_or_else(|| Error::not_found("Friend"))?;
                Ok(FriendView {
                    user: other,
                    remark: f.remark,
                    since: f.created_at,
                })
            })
            .await
    }

    /// Blocks a user: it also ends the friendship and any pending request between the two.
    /// Blocking twice is harmless. Answers the block's time.
    pub async fn block(&self, me: &User, other_ref: &str) -> Result<(User, i64)> {
        let (me, other_ref) = (me.id.clone(), other_ref.to_owned());
        self.store
            .write(move |c| {
                let other = resolve_user(c, &other_ref)?;
                if other.id == me {
                    return Err(Error::invalid("You cannot block yourself"));
                }
                let now = now_ms();
                contacts::block(c, &me, &other.id, now)?;
                contacts::unfriend(c, &me, &other.id)?;
                contacts::close_pending_between(c, &me, &other.id, RequestStatus::Rejected, now)?;
                let at = contacts::blocked_by(c, &me)?
                    .into_iter()
                    .find(|(id, _)| *id == other.id)
                    .map_or(now, |(_, at)| at);
                Ok((other, at))
            })
            .await
    }

    /// Lifts the caller's block of a user; 404 if there was none.
    pub async fn unblock(&self, me: &User, other_ref: &str) -> Result<User> {
        let (me, other_ref) = (me.id.clone(), other_ref.to_owned());
        self.store
            .write(move |c| {
                let other = resolve_user(c, &other_ref)?;
                if !contacts::unblock(c, &me, &other.id)? {
                    return Err(Error::not_found("Block"));
                }
                Ok(other)
            })
            .await
    }

    /// The users the caller blocked, with when, oldest first.
    pub async fn blocked(&self, me: &User) -> Result<Vec<(User, i64)>> {
        let me = me.id.clone();
        self.store
            .read(move |c| {
                let mut out = Vec::new();
                for (id, at) in contacts::blocked_by(c, &me)? {
                    if let Some(u) = users::get(c, &id)? {
                        out.push((u, at));
                    }
                }
                Ok(out)
            })
            .await
    }
}
