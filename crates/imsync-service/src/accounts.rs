//! Accounts and sessions: registration (token-only agents and password accounts), login, tokens
//! (random, stored as their SHA-256, with an expiry), profile changes.

use crate::hub::SessionKey;
use crate::Service;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use imsync_core::model::ConversationKind;
use imsync_core::model::{User, UserRole};
use imsync_core::{ids, time::now_ms, validate, Error, ErrorCode, Result};
use imsync_store::repo::{messages, participants, tokens, users};

/// The longest an expired token may still be swapped for a new one (the lifetime, if shorter).
pub const MAX_REFRESH_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;
/// How long a refreshed token may be swapped again, for a client that lost the answer.
pub const REFRESH_RETRY_MS: i64 = 60 * 1000;

#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    pub username: String,
    pub display_name: Option<String>,
    pub role: Option<String>,
    pub agent_type: Option<String>,
    pub password: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub token: String,
    pub expires_at: i64,
    /// The token's lifetime from issue to expiry.
    pub lifetime_ms: i64,
    pub is_new: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ProfilePatch {
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub bio: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub conversation_count: i64,
    pub direct_count: i64,
    pub group_count: i64,
    pub contact_count: i64,
    pub messages_sent: i64,
    pub unread_count: i64,
}

fn session_key(hash: String, expires_at: i64) -> SessionKey {
    SessionKey {
        token_hash: hash.into(),
        expires_at,
    }
}

fn account_disabled() -> Error {
    Error::new(ErrorCode::AccountDisabled, "This account is disabled")
}

/// Marks a password hash whose input is the hex SHA-256 of the password rather than the
/// password itself. Both a plain password and its SHA-256 digest (what Rocket.Chat's DDP
/// clients send) can be checked against such a hash. Hashes without the mark are argon2 of the
/// plain password, as accounts made before digests were accepted have them; a plain login
/// rewrites them with the mark.
const DIGEST_HASH_PREFIX: &str = "sha256$";

/// The secret a login presents.
#[derive(Debug, Clone, Copy)]
pub enum Password<'a> {
    Plain(&'a str),
    /// The hex SHA-256 of the password (either case).
    Sha256Hex(&'a str),
}

/// The hex SHA-256 of a password, the input of stored hashes.
pub fn password_digest(password: &str) -> String {
    ids::token_hash(password)
}

fn argon2_hash(input: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(input.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(Error::internal)
}

fn argon2_verify(input: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(input.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Refuses a password too short to be set.
pub(crate) fn check_new_password(password: &str) -> Result<()> {
    if password.chars().count() < validate::MIN_PASSWORD_LEN {
        return Err(Error::invalid(format!(
            "password must have at least {} characters",
            validate::MIN_PASSWORD_LEN
        )));
    }
    Ok(())
}

/// The hash to store for a new password, once checked. Hashing takes tens of milliseconds of
/// CPU, so it runs on a blocking thread rather than on the runtime's.
pub(crate) async fn hash_new_password(password: String) -> Result<String> {
    check_new_password(&password)?;
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(Error::internal)?
}

pub(crate) fn hash_password(password: &str) -> Result<String> {
    Ok(format!(
        "{DIGEST_HASH_PREFIX}{}",
        argon2_hash(&password_digest(password))?
    ))
}

/// Whether `password` matches `stored`; `Some(new hash)` alongside when the stored hash is of
/// the old kind and should be replaced.
fn verify_password(password: Password<'_>, stored: &str) -> (bool, Option<String>) {
    match (stored.strip_prefix(DIGEST_HASH_PREFIX), password) {
        (Some(h), Password::Plain(p)) => (argon2_verify(&password_digest(p), h), None),
        (Some(h), Password::Sha256Hex(d)) => {
            let d = d.to_ascii_lowercase();
            let well_formed = d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit());
            (well_formed && argon2_verify(&d, h), None)
        }
        (None, Password::Plain(p)) => {
            if argon2_verify(p, stored) {
                (true, hash_password(p).ok())
            } else {
                (false, None)
            }
        }
        // An old hash takes only the plain password, until a plain login rewrites it.
        (None, Password::Sha256Hex(_)) => (false, None),
    }
}

impl Service {
    /// The user a token belongs to; 401 for an unknown or expired token.
    pub async fn authenticate(&self, token: &str) -> Result<User> {
        // A cached caller costs no SHA-256: only a miss hashes the token.
        if let Some((user, _)) = self.sessions.get_with_expiry(token, now_ms()) {
            return Ok(user);
        }
        Ok(self.authenticate_uncached(token).await?.0)
    }

    /// [`Service::authenticate`], with the session's key for a realtime subscription, which
    /// the hub ends when the session ends.
    pub async fn authenticate_session(&self, token: &str) -> Result<(User, SessionKey)> {
        if let Some((user, expires_at)) = self.sessions.get_with_expiry(token, now_ms()) {
            return Ok((user, session_key(ids::token_hash(token), expires_at)));
        }
        let (user, hash, expires_at) = self.authenticate_uncached(token).await?;
        Ok((user, session_key(hash, expires_at)))
    }

    /// The token's user from the store, cached for the next requests; answers the user, the
    /// token's hash and its expiry.
    async fn authenticate_uncached(&self, token: &str) -> Result<(User, String, i64)> {
        let hash = ids::token_hash(token);
        let key = hash.clone();
        let (user, expires_at) = self
            .store
            .read(move |c| {
                let invalid = || Error::new(ErrorCode::Unauthorized, "Invalid or expired token");
                let Some((user_id, expires_at)) = tokens::lookup(c, &key)? else {
                    return Err(invalid());
                };
                if expires_at <= now_ms() {
                    return Err(invalid());
                }
                let user = users::get(c, &user_id)?.ok_or_else(invalid)?;
                Ok((user, expires_at))
            })
            .await?;
        self.sessions
            .put(token.to_owned(), user.clone(), expires_at);
        Ok((user, hash, expires_at))
    }

    pub(crate) fn new_user(&self, a: &NewAccount) -> Result<User> {
        validate::username(&a.username)?;
        let display_name = a.display_name.clone().unwrap_or_else(|| a.username.clone());
        validate::non_blank("displayName", &display_name)?;
        validate::max_len("displayName", &display_name, validate::MAX_DISPLAY_NAME_LEN)?;
        let role = match a.role.as_deref() {
            None => UserRole::Human,
            Some(r) => UserRole::parse(r)
                .ok_or_else(|| Error::invalid("type/role must be \"agent\" or \"human\""))?,
        };
        if let Some(m) = &a.metadata {
            if !m.is_object() {
                return Err(Error::invalid("metadata must be an object"));
            }
        }
        let now = now_ms();
        Ok(User {
            id: ids::new_id(),
            username: a.username.clone(),
            display_name,
            role,
            agent_type: a.agent_type.clone(),
            avatar_url: None,
            bio: None,
            metadata: a.metadata.clone().unwrap_or_else(|| serde_json::json!({})),
            has_password: a.password.is_some(),
            created_at: now,
            updated_at: now,
        })
    }

    fn issue(&self, c: &mut dyn imsync_store::SqlConn, user_id: &str) -> Result<(String, i64)> {
        let token = ids::new_token();
        let now = now_ms();
        let expires_at = now + self.config.token_ttl_ms;
        tokens::insert(c, &ids::token_hash(&token), user_id, now, expires_at)?;
        Ok((token, expires_at))
    }

    /// Creates an account, or, when `caller` already is that account, hands the caller a fresh
    /// token for it. Anyone else asking for an existing name gets 409: a token is only ever given
    /// to someone who proved they own the account.
    pub async fn register(&self, caller: Option<User>, account: NewAccount) -> Result<Session> {
        if let Some(me) = caller.filter(|u| u.username.eq_ignore_ascii_case(&account.username)) {
            let this = self.clone();
            return self
                .store
                .write(move |c| {
                    let (token, expires_at) = this.issue(c, &me.id)?;
                    Ok(Session {
                        user: me,
                        token,
                        expires_at,
                        lifetime_ms: this.config.token_ttl_ms,
                        is_new: false,
                    })
                })
                .await;
        }
        if !self.config.registration_open {
            return Err(Error::new(
                ErrorCode::RegistrationClosed,
                "Registration is closed",
            ));
        }
        if let Some(p) = &account.password {
            check_new_password(p)?;
        }
        let user = self.new_user(&account)?;
        let password_hash = match account.password.clone() {
            Some(p) => Some(hash_new_password(p).await?),
            None => None,
        };
        let this = self.clone();
        self.store
            .write(move |c| {
                if users::username_taken(c, &user.username)? {
                    return Err(Error::new(
                        ErrorCode::UsernameTaken,
                        "Username already taken",
                    ));
                }
                users::insert(c, &user, password_hash.as_deref())?;
                // What faces do for a new account, in the same transaction.
                for hook in this.registration_hooks.iter() {
                    hook.on_register(c, &user)?;
                }
                let (token, expires_at) = this.issue(c, &user.id)?;
                Ok(Session {
                    user,
                    token,
                    expires_at,
                    lifetime_ms: this.config.token_ttl_ms,
                    is_new: true,
                })
            })
            .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Result<Session> {
        self.login_with(username, Password::Plain(password)).await
    }

    /// A login with the plain password or its SHA-256 digest. An account whose stored hash
    /// predates digests gets the current kind at its next plain login.
    pub async fn login_with(&self, username: &str, password: Password<'_>) -> Result<Session> {
        let name = username.to_owned();
        let found = self
            .store
            .read(move |c| users::credentials(c, &name))
            .await?;
        let bad = || {
            Error::new(
                ErrorCode::InvalidCredentials,
                "Invalid username or password",
            )
        };
        let Some(users::Credentials {
            user_id,
            password_hash: Some(hash),
            disabled,
        }) = found
        else {
            return Err(bad());
        };
        let owned = match password {
            Password::Plain(p) => (p.to_owned(), false),
            Password::Sha256Hex(d) => (d.to_owned(), true),
        };
        let (ok, rehash) = tokio::task::spawn_blocking(move || {
            let given = if owned.1 {
                Password::Sha256Hex(&owned.0)
            } else {
                Password::Plain(&owned.0)
            };
            verify_password(given, &hash)
        })
        .await
        .map_err(Error::internal)?;
        if !ok {
            return Err(bad());
        }
        // Said only to whoever knows the password: to anyone else the account looks like any
        // other that refused them.
        if disabled {
            return Err(account_disabled());
        }
        let this = self.clone();
        self.store
            .write(move |c| {
                let account = users::account(c, &user_id)?.ok_or_else(bad)?;
                // Disabled while the password was being checked.
                if account.disabled_at.is_some() {
                    return Err(account_disabled());
                }
                let user = account.user;
                if let Some(h) = &rehash {
                    users::set_password_hash(c, &user.id, h)?;
                }
                let (token, expires_at) = this.issue(c, &user.id)?;
                Ok(Session {
                    user,
                    token,
                    expires_at,
                    lifetime_ms: this.config.token_ttl_ms,
                    is_new: false,
                })
            })
            .await
    }

    pub async fn logout(&self, token: &str) -> Result<()> {
        self.sessions.forget_token(token);
        let hash = ids::token_hash(token);
        let key = hash.clone();
        self.store.write(move |c| tokens::delete(c, &key)).await?;
        // This node's realtime connections end now; other nodes' at their next session check.
        self.hub.end_sessions(|k| *k.token_hash == *hash);
        Ok(())
    }

    /// Swaps a token for a new one. The old token stops authenticating at once (and its
    /// realtime connections end); it can be swapped again for [`REFRESH_RETRY_MS`], so a client
    /// that lost the answer retries with it. An expired token can be swapped for as long as
    /// the token lifetime again (at most [`MAX_REFRESH_WINDOW_MS`]) after it expired.
    pub async fn refresh_token(&self, token: &str) -> Result<Session> {
        let hash = ids::token_hash(token);
        let window = self.config.token_ttl_ms.min(MAX_REFRESH_WINDOW_MS);
        let this = self.clone();
        let old = hash.clone();
        let session = self
            .store
            .write(move |c| {
                let invalid = || Error::new(ErrorCode::Unauthorized, "Invalid or expired token");
                let (user_id, expires_at, retry_until) =
                    tokens::lookup_for_refresh(c, &old)?.ok_or_else(invalid)?;
                let now = now_ms();
                let open = match retry_until {
                    Some(until) => now < until,
                    None => now < expires_at.saturating_add(window),
                };
                if !open {
                    return Err(invalid());
                }
                let user = users::get(c, &user_id)?.ok_or_else(invalid)?;
                let (token, expires_at) = this.issue(c, &user.id)?;
                tokens::retire(c, &old, now, now + REFRESH_RETRY_MS)?;
                Ok(Session {
                    user,
                    token,
                    expires_at,
                    lifetime_ms: this.config.token_ttl_ms,
                    is_new: false,
                })
            })
            .await?;
        self.sessions.forget_token(token);
        self.hub.end_sessions(|k| *k.token_hash == *hash);
        Ok(session)
    }

    pub async fn update_profile(&self, me: &User, patch: ProfilePatch) -> Result<User> {
        if let Some(d) = &patch.display_name {
            validate::non_blank("displayName", d)?;
            validate::max_len("displayName", d, validate::MAX_DISPLAY_NAME_LEN)?;
        }
        if let Some(m) = &patch.metadata {
            if !m.is_object() {
                return Err(Error::invalid("metadata must be an object"));
            }
        }
        let id = me.id.clone();
        self.store
            .write(move |c| {
                let mut u = users::get(c, &id)?.ok_or_else(|| Error::not_found("User"))?;
                if let Some(d) = patch.display_name {
                    u.display_name = d;
                }
                if let Some(a) = patch.avatar_url {
                    u.avatar_url = Some(a);
                }
                if let Some(b) = patch.bio {
                    u.bio = Some(b);
                }
                if let Some(m) = patch.metadata {
                    u.metadata = m;
                }
                u.updated_at = now_ms();
                users::update_profile(c, &u)?;
                Ok(u)
            })
            .await
            .inspect(|u| self.sessions.forget_user(&u.id))
    }

    /// Deactivates the account: its sessions end, its name stays reserved, its messages stay.
    /// The last enabled admin is refused, as when demoted or disabled.
    pub async fn delete_account(&self, me: &User) -> Result<()> {
        let id = me.id.clone();
        self.store
            .write(move |c| {
                if let Some(before) = users::account(c, &id)? {
                    crate::admin::keep_an_admin(c, &before, false)?;
                }
                tokens::delete_for_user(c, &id)?;
                users::mark_deleted(c, &id, now_ms())
            })
            .await?;
        self.sessions.forget_user(&me.id);
        self.hub.end_user(&me.id);
        Ok(())
    }

    pub async fn stats(&self, me: &User) -> Result<Stats> {
        let id = me.id.clone();
        self.store
            .read(move |c| {
                let mut s = Stats::default();
                for (conv, p) in participants::conversations_of(c, &id)? {
                    s.conversation_count += 1;
                    match conv.kind {
                        ConversationKind::Direct => {
                            s.direct_count += 1;
                            s.contact_count += 1;
                        }
                        ConversationKind::Group => s.group_count += 1,
                    }
                    s.unread_count += messages::unread_count(c, &conv.id, &id, p.read_msg_seq)?;
                }
                s.messages_sent = messages::count_sent_by(c, &id)?;
                Ok(s)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST_OF_SECRET: &str =
        "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

    #[test]
    fn new_hashes_take_the_plain_password_and_its_digest() {
        assert_eq!(password_digest("secret"), DIGEST_OF_SECRET);
        let h = hash_password("secret").unwrap();
        assert!(h.starts_with(DIGEST_HASH_PREFIX));
        assert_eq!(verify_password(Password::Plain("secret"), &h), (true, None));
        assert_eq!(
            verify_password(Password::Sha256Hex(DIGEST_OF_SECRET), &h),
            (true, None)
        );
        let upper = DIGEST_OF_SECRET.to_ascii_uppercase();
        assert!(verify_password(Password::Sha256Hex(&upper), &h).0);
        assert!(!verify_password(Password::Plain("Secret"), &h).0);
        assert!(!verify_password(Password::Sha256Hex(&password_digest("x")), &h).0);
        assert!(!verify_password(Password::Sha256Hex("secret"), &h).0);
        // The digest is the secret now: it must not pass as a plain password.
        assert!(!verify_password(Password::Plain(DIGEST_OF_SECRET), &h).0);
    }

    #[tokio::test]
    async fn an_account_with_an_old_hash_is_migrated_by_its_next_plain_login() {
        let dir = tempfile::tempdir().unwrap();
        let store = imsync_store::Store::open(&imsync_store::StoreOptions {
            sqlite_path: dir.path().join("imsync.db"),
            durability: imsync_store::Durability::Normal,
        })
        .unwrap();
        let service = Service::new(store.clone(), crate::ServiceConfig::default());
        let account = NewAccount {
            username: "old".into(),
            password: Some("secret-pass".into()),
            ..Default::default()
        };
        let id = service.register(None, account).await.unwrap().user.id;
        // As an account made before digests were accepted stored it.
        let old = argon2_hash("secret-pass").unwrap();
        let uid = id.clone();
        store
            .write(move |c| users::set_password_hash(c, &uid, &old))
            .await
            .unwrap();
        let digest = password_digest("secret-pass");
        let refused = service
            .login_with("old", Password::Sha256Hex(&digest))
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidCredentials);
        service.login("old", "secret-pass").await.unwrap();
        let stored = store
            .read(|c| users::credentials(c, "old"))
            .await
            .unwrap()
            .and_then(|c| c.password_hash)
            .unwrap();
        assert!(stored.starts_with(DIGEST_HASH_PREFIX), "{stored}");
        let s = service
            .login_with("old", Password::Sha256Hex(&digest))
            .await
            .unwrap();
        assert_eq!(s.user.id, id);
        service.login("old", "secret-pass").await.unwrap();
        assert!(service.login("old", "wrong-pass").await.is_err());
    }

    #[test]
    fn old_hashes_take_the_plain_password_and_are_rewritten() {
        let old = argon2_hash("secret").unwrap();
        let (ok, rehash) = verify_password(Password::Plain("secret"), &old);
        assert!(ok);
        let new = rehash.expect("an old hash is rewritten");
        assert!(verify_password(Password::Sha256Hex(DIGEST_OF_SECRET), &new).0);
        assert!(verify_password(Password::Plain("secret"), &new).0);
        assert_eq!(
            verify_password(Password::Plain("nope"), &old),
            (false, None)
        );
        assert_eq!(
            verify_password(Password::Sha256Hex(DIGEST_OF_SECRET), &old),
            (false, None)
        );
    }
}
