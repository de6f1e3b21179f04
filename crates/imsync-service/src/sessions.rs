//! A short-lived cache of authenticated tokens, so that a request does not pay a database read
//! just to learn who is calling. Entries live a few seconds: a logout, a profile change or an
//! account deletion on this node drops them at once; on another node they end within the TTL.
//!
//! Entries are keyed by the token as presented: the database keeps only tokens' hashes, but
//! hashing every request's token (SHA-256) was a twentieth of a send's work on the runtime
//! threads, and the process sees the plain token in every request anyway.

use imsync_core::model::User;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(5);
const MAX_ENTRIES: usize = 100_000;

struct Entry {
    user: User,
    expires_at_ms: i64,
    cached: Instant,
}

#[derive(Default)]
pub(crate) struct SessionCache {
    by_token: Mutex<HashMap<String, Entry>>,
}

impl SessionCache {
    /// The cached user and the token's expiry.
    pub fn get_with_expiry(&self, token: &str, now_ms: i64) -> Option<(User, i64)> {
        let map = self.by_token.lock();
        let e = map.get(token)?;
        (e.cached.elapsed() < TTL && e.expires_at_ms > now_ms)
            .then(|| (e.user.clone(), e.expires_at_ms))
    }

    pub fn put(&self, token: String, user: User, expires_at_ms: i64) {
        let mut map = self.by_token.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.cached.elapsed() < TTL);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            token,
            Entry {
                user,
                expires_at_ms,
                cached: Instant::now(),
            },
        );
    }

    pub fn forget_token(&self, token: &str) {
        self.by_token.lock().remove(token);
    }

    pub fn forget_user(&self, user_id: &str) {
        self.by_token.lock().retain(|_, e| e.user.id != user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imsync_core::model::UserRole;

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            username: id.into(),
            display_name: id.into(),
            role: UserRole::Human,
            agent_type: None,
            avatar_url: None,
            bio: None,
            metadata: serde_json::json!({}),
            has_password: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn cached_until_forgotten_or_expired() {
        let c = SessionCache::default();
        c.put("h1".into(), user("u1"), 1_000);
        c.put("h2".into(), user("u1"), 1_000);
        c.put("h3".into(), user("u2"), 1_000);
        assert_eq!(c.get_with_expiry("h1", 10).unwrap().0.id, "u1");
        assert!(
            c.get_with_expiry("h1", 1_000).is_none(),
            "the token itself expired"
        );
        c.forget_token("h1");
        assert!(c.get_with_expiry("h1", 10).is_none());
        c.forget_user("u1");
        assert!(c.get_with_expiry("h2", 10).is_none());
        assert_eq!(c.get_with_expiry("h3", 10).unwrap().0.id, "u2");
    }
}
