//! Account administration: accounts made by an admin (also while registration is closed), the
//! admin role, disabling and enabling, password resets, and ending a user's sessions. Shared by
//! the native face's admin API and the `imsync user` command, which runs these on the server's
//! database from another process.
//!
//! Whatever ends sessions deletes the user's tokens in the same transaction as the change, and a
//! disabled account's tokens are refused even if one survived, so the change holds on every node
//! and every face: at once on the node that made it (its session cache and realtime connections
//! are dropped here), elsewhere as soon as that node next reads the token (its session cache
//! keeps a token at most a few seconds; its realtime connections are checked every
//! [`crate::hub::SESSION_CHECK`]).

use crate::accounts::hash_new_password;
use crate::{resolve_user, NewAccount, Service};
use imsync_core::{time::now_ms, Error, ErrorCode, Result};
use imsync_store::repo::tokens;
use imsync_store::repo::users::{self, Account};
use imsync_store::SqlConn;

/// The most accounts one page of the admin list holds.
pub const MAX_PAGE: i64 = 1000;

/// The account a reference (id or username) names, or 404.
fn find(c: &mut dyn SqlConn, reference: &str) -> Result<Account> {
    let id = resolve_user(c, reference)?.id;
    users::account(c, &id)?.ok_or_else(|| Error::not_found("User"))
}

/// Refuses a change that would leave the server with no enabled admin: the admin API would be
/// out of reach until someone ran `imsync user` on the database.
pub(crate) fn keep_an_admin(
    c: &mut dyn SqlConn,
    before: &Account,
    counts_after: bool,
) -> Result<()> {
    let counts_before = before.admin && before.disabled_at.is_none();
    if counts_before && !counts_after && users::active_admin_count(c)? <= 1 {
        return Err(Error::conflict(format!(
            "{} is the last enabled admin; make another admin first",
            before.user.username
        )));
    }
    Ok(())
}

/// A change to an account; `None` leaves that part as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountChange {
    pub admin: Option<bool>,
    pub disabled: Option<bool>,
}

impl Service {
    /// Refuses (403) a caller who is not an enabled admin. Read from the store on every call, so
    /// a role taken away holds at once.
    pub async fn require_admin(&self, caller: &imsync_core::model::User) -> Result<()> {
        let id = caller.id.clone();
        let admin = self
            .store
            .read(move |c| users::is_active_admin(c, &id))
            .await?;
        match admin {
            true => Ok(()),
            false => Err(Error::forbidden("This needs the admin role")),
        }
    }

    /// Creates a password account, whether or not registration is open. The account gets no
    /// session: its user logs in. Registration's hooks run as for any new account.
    pub async fn create_account(&self, account: NewAccount, admin: bool) -> Result<Account> {
        let password = account
            .password
            .clone()
            .ok_or_else(|| Error::invalid("password is required"))?;
        let user = self.new_user(&account)?;
        let hash = hash_new_password(password).await?;
        let this = self.clone();
        self.store
            .write(move |c| {
                if users::username_taken(c, &user.username)? {
                    return Err(Error::new(
                        ErrorCode::UsernameTaken,
                        "Username already taken",
                    ));
                }
                users::insert(c, &user, Some(&hash))?;
                if admin {
                    users::set_admin(c, &user.id, true, user.updated_at)?;
                }
                for hook in this.registration_hooks.iter() {
                    hook.on_register(c, &user)?;
                }
                users::account(c, &user.id)?.ok_or_else(|| Error::not_found("User"))
            })
            .await
    }

    /// A page of the live accounts, oldest first, and how many there are.
    pub async fn accounts(&self, offset: i64, limit: i64) -> Result<(Vec<Account>, i64)> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::param(format!("limit must be 1 to {MAX_PAGE}")));
        }
        if offset < 0 {
            return Err(Error::param("offset must not be negative"));
        }
        self.store
            .read(move |c| users::account_page(c, offset, limit))
            .await
    }

    /// The account named by an id or a username.
    pub async fn account(&self, reference: &str) -> Result<Account> {
        let reference = reference.to_owned();
        self.store.read(move |c| find(c, &reference)).await
    }

    /// Changes an account's role or state in one transaction: disabling ends its sessions (and
    /// it cannot log in until enabled again). Answers the account and how many sessions ended.
    pub async fn update_account(
        &self,
        reference: &str,
        change: AccountChange,
    ) -> Result<(Account, u64)> {
        let reference = reference.to_owned();
        let (account, ended) = self
            .store
            .write(move |c| {
                let before = find(c, &reference)?;
                let id = before.user.id.clone();
                let admin = change.admin.unwrap_or(before.admin);
                let disabled = change.disabled.unwrap_or(before.disabled_at.is_some());
                keep_an_admin(c, &before, admin && !disabled)?;
                let now = now_ms();
                if admin != before.admin {
                    users::set_admin(c, &id, admin, now)?;
                }
                let ended = match (disabled, before.disabled_at) {
                    (true, None) => {
                        users::set_disabled(c, &id, Some(now), now)?;
                        tokens::delete_for_user(c, &id)?
                    }
                    (false, Some(_)) => {
                        users::set_disabled(c, &id, None, now)?;
                        0
                    }
                    // Already as asked.
                    _ => 0,
                };
                let after = users::account(c, &id)?.ok_or_else(|| Error::not_found("User"))?;
                Ok((after, ended))
            })
            .await?;
        if account.disabled_at.is_some() {
            self.end_local_sessions(&account.user.id);
        }
        Ok((account, ended))
    }

    /// Sets a new password and ends the account's sessions; answers how many ended.
    pub async fn reset_password(
        &self,
        reference: &str,
        password: String,
    ) -> Result<(Account, u64)> {
        let hash = hash_new_password(password).await?;
        let reference = reference.to_owned();
        let (account, ended) = self
            .store
            .write(move |c| {
                let account = find(c, &reference)?;
                users::set_password_hash(c, &account.user.id, &hash)?;
                let ended = tokens::delete_for_user(c, &account.user.id)?;
                let account =
                    users::account(c, &account.user.id)?.ok_or_else(|| Error::not_found("User"))?;
                Ok((account, ended))
            })
            .await?;
        self.end_local_sessions(&account.user.id);
        Ok((account, ended))
    }

    /// Ends every session of an account, on every face; answers how many there were.
    pub async fn end_sessions(&self, reference: &str) -> Result<(Account, u64)> {
        let reference = reference.to_owned();
        let (account, ended) = self
            .store
            .write(move |c| {
                let account = find(c, &reference)?;
                let ended = tokens::delete_for_user(c, &account.user.id)?;
                Ok((account, ended))
            })
            .await?;
        self.end_local_sessions(&account.user.id);
        Ok((account, ended))
    }

    /// What this node holds of a user's sessions: cached tokens and realtime connections.
    fn end_local_sessions(&self, user_id: &str) {
        self.sessions.forget_user(user_id);
        self.hub.end_user(user_id);
    }
}
