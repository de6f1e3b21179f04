//! The live hub: fans committed events out to connected clients.
//!
//! The hub reads appended events from one feed, in commit order (today the store's own commit
//! feed; with several nodes, a feed that also carries other nodes' appends). For each event it
//! computes the audience once — the user of a private event, or the conversation's participants
//! at the event's seq — and offers the event to every subscription of those users through a
//! bounded queue. A subscription whose queue is full is dropped and marked lagging, so a slow
//! consumer never slows the writer or anyone else; its client resumes from its last seq.
//!
//! Participants per conversation are loaded once, as of the first event that needs them, from the
//! membership intervals (so a hub that is behind still gets them right), and then kept current by
//! applying `participant.add` (before delivering it, so the new member gets it) and
//! `participant.remove` (after delivering it, so the removed member gets it and nothing more).
//! Changes to a message (edit, deletion, reaction) go only to members who could see the message
//! itself, as sync does.
//!
//! A subscription opened with a session token lives no longer than the token: the hub ends it
//! (as revoked) at once when the token is revoked on this node, and its run loop checks the
//! tokens of open subscriptions against the store every [`SESSION_CHECK`], which catches
//! expiry, and logouts and refreshes made on other nodes of a shared database.

use imsync_core::event::{kind as ev, EventData};
use imsync_core::model::{Audience, Event};
use imsync_core::{Seq, UserId};
use imsync_store::repo::{participants, tokens};
use imsync_store::Store;
use parking_lot::Mutex;
use serde_json::Value;
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::{broadcast, mpsc};

/// Default queue length of one subscription before it counts as lagging.
pub const DEFAULT_QUEUE: usize = 1024;

/// How often open subscriptions' tokens are checked: the longest a realtime connection outlives
/// its token's expiry or its revocation on another node.
pub const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The session a subscription was opened with: its token's hash and expiry.
#[derive(Debug, Clone)]
pub struct SessionKey {
    pub token_hash: Arc<str>,
    pub expires_at: i64,
}

/// An event on its way to connections, with a rendering cache shared by all of them.
pub struct Delivered {
    pub event: Event,
    pub rendered: OnceLock<Vec<String>>,
    typed: OnceLock<Option<EventData>>,
    shared: Mutex<Vec<Arc<dyn Any + Send + Sync>>>,
}

impl Delivered {
    pub fn new(event: Event) -> Delivered {
        Delivered {
            event,
            rendered: OnceLock::new(),
            typed: OnceLock::new(),
            shared: Mutex::new(Vec::new()),
        }
    }

    /// The payload as its kind's type, parsed once for every connection it reaches; `None` if
    /// it does not parse.
    pub fn typed(&self) -> Option<&EventData> {
        self.typed.get_or_init(|| self.event.typed().ok()).as_ref()
    }

    /// This delivery's one value of type `T`, shared by every connection it reaches and made
    /// (as `T::default()`) by the first that asks: where a face keeps what it renders once per
    /// event instead of once per connection.
    pub fn shared<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let mut list = self.shared.lock();
        if let Some(v) = list.iter().find_map(|v| v.clone().downcast::<T>().ok()) {
            return v;
        }
        let v = Arc::new(T::default());
        list.push(v.clone());
        v
    }
}

/// What a subscription receives.
#[derive(Clone)]
pub enum Delivery {
    Event(Arc<Delivered>),
    /// A frame that is not stored (typing, presence), already in wire form.
    Ephemeral(Arc<Value>),
}

struct Sub {
    id: u64,
    tx: mpsc::Sender<Delivery>,
    lagged: Arc<AtomicBool>,
    session: Option<SessionKey>,
    revoked: Arc<AtomicBool>,
}

#[derive(Default)]
struct Subscribers {
    by_user: HashMap<UserId, Vec<Sub>>,
    last_seen: HashMap<UserId, i64>,
}

struct Inner {
    queue: usize,
    subs: Mutex<Subscribers>,
    next_id: AtomicU64,
    /// The seq of the last event the hub has offered to subscriptions.
    position: AtomicI64,
    /// Set at shutdown: subscriptions end as "going away" and no new ones stay open.
    closing: AtomicBool,
    /// Realtime connections still running (see [`Hub::track`]).
    active: AtomicUsize,
    idle: tokio::sync::Notify,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A live subscription. Dropping it unsubscribes.
pub struct Subscription {
    pub rx: mpsc::Receiver<Delivery>,
    lagged: Arc<AtomicBool>,
    revoked: Arc<AtomicBool>,
    id: u64,
    user: UserId,
    hub: Hub,
}

impl Subscription {
    /// True once the hub dropped this subscription for falling behind.
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }

    /// True once the hub ended this subscription because its session ended (logout, refresh,
    /// expiry, account deletion).
    pub fn revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.hub.inner.subs.lock();
        let now_empty = match subs.by_user.get_mut(&self.user) {
            Some(list) => {
                list.retain(|s| s.id != self.id);
                list.is_empty()
            }
            None => false,
        };
        if now_empty {
            subs.by_user.remove(&self.user);
            subs.last_seen
                .insert(self.user.clone(), imsync_core::time::now_ms());
        }
    }
}

/// Held by a running realtime connection.
pub struct ConnectionGuard(Hub);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.inner.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.inner.idle.notify_waiters();
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(DEFAULT_QUEUE)
    }
}

impl Hub {
    pub fn new(queue: usize) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                queue: queue.max(1),
                subs: Mutex::new(Subscribers::default()),
                next_id: AtomicU64::new(1),
                position: AtomicI64::new(0),
                closing: AtomicBool::new(false),
                active: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Subscribes a user's connection, opened with `session` if it has one. Every event the
    /// hub offers after this call reaches it (until it lags or its session ends); answers
    /// whether this is the user's first connection.
    pub fn subscribe(&self, user: &str, session: Option<SessionKey>) -> (Subscription, bool) {
        let (tx, rx) = mpsc::channel(self.inner.queue);
        let lagged = Arc::new(AtomicBool::new(false));
        let revoked = Arc::new(AtomicBool::new(false));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subs = self.inner.subs.lock();
        let list = subs.by_user.entry(user.to_owned()).or_default();
        let first = list.is_empty();
        if !self.inner.closing.load(Ordering::Acquire) {
            list.push(Sub {
                id,
                tx,
                lagged: lagged.clone(),
                session,
                revoked: revoked.clone(),
            });
        }
        drop(subs);
        (
            Subscription {
                rx,
                lagged,
                revoked,
                id,
                user: user.to_owned(),
                hub: self.clone(),
            },
            first,
        )
    }

    pub fn position(&self) -> Seq {
        self.inner.position.load(Ordering::Acquire)
    }

    /// Online while the user has a connection; otherwise when they were last seen, if known.
    pub fn presence(&self, user: &str) -> (bool, Option<i64>) {
        let subs = self.inner.subs.lock();
        if subs.by_user.contains_key(user) {
            (true, None)
        } else {
            (false, subs.last_seen.get(user).copied())
        }
    }

    pub fn connected_users(&self) -> usize {
        self.inner.subs.lock().by_user.len()
    }

    /// Offers a delivery to every connection of the given users.
    pub fn deliver(&self, users: &[UserId], d: &Delivery) {
        let mut subs = self.inner.subs.lock();
        for u in users {
            if let Some(list) = subs.by_user.get_mut(u) {
                list.retain(|s| match s.tx.try_send(d.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        s.lagged.store(true, Ordering::Release);
                        metrics::counter!("imsync_realtime_lagging_closed_total").increment(1);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
            }
        }
    }

    fn is_subscribed(&self, user: &str) -> bool {
        self.inner.subs.lock().by_user.contains_key(user)
    }

    /// Ends a user's subscriptions as lagging: they resume from their last seq.
    fn drop_user(&self, user: &str) {
        if let Some(list) = self.inner.subs.lock().by_user.remove(user) {
            for s in list {
                s.lagged.store(true, Ordering::Release);
            }
        }
    }

    /// Ends, as revoked, every subscription whose session `ended` says is over; answers how
    /// many.
    pub fn end_sessions(&self, ended: impl Fn(&SessionKey) -> bool) -> usize {
        let mut n = 0;
        let mut subs = self.inner.subs.lock();
        for list in subs.by_user.values_mut() {
            list.retain(|s| match &s.session {
                Some(k) if ended(k) => {
                    s.revoked.store(true, Ordering::Release);
                    n += 1;
                    false
                }
                _ => true,
            });
        }
        subs.by_user.retain(|_, list| !list.is_empty());
        n
    }

    /// Ends, as revoked, every subscription of a user (their account is gone).
    pub fn end_user(&self, user: &str) {
        if let Some(list) = self.inner.subs.lock().by_user.remove(user) {
            for s in list {
                s.revoked.store(true, Ordering::Release);
            }
        }
    }

    /// The distinct token hashes of open subscriptions.
    fn session_hashes(&self) -> Vec<Arc<str>> {
        let subs = self.inner.subs.lock();
        let mut out: Vec<Arc<str>> = subs
            .by_user
            .values()
            .flatten()
            .filter_map(|s| s.session.as_ref().map(|k| k.token_hash.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Ends the subscriptions whose token expired or no longer exists in the store.
    async fn check_sessions(&self, store: &Store) {
        let now = imsync_core::time::now_ms();
        self.end_sessions(|k| k.expires_at <= now);
        let hashes = self.session_hashes();
        if hashes.is_empty() {
            return;
        }
        let asked: std::collections::HashSet<Arc<str>> = hashes.iter().cloned().collect();
        let list: Vec<String> = hashes.iter().map(|h| h.to_string()).collect();
        match store.read(move |c| tokens::live_among(c, &list, now)).await {
            Ok(live) => {
                self.end_sessions(|k| {
                    asked.contains(&k.token_hash) && !live.contains(&*k.token_hash)
                });
            }
            Err(e) => tracing::warn!(error = %e.message, "could not check realtime sessions"),
        }
    }

    fn has_subscribers(&self) -> bool {
        !self.inner.subs.lock().by_user.is_empty()
    }

    /// Ends every subscription as "going away" (server shutdown); later ones end at once.
    pub fn close_all(&self) {
        self.inner.closing.store(true, Ordering::Release);
        self.inner.subs.lock().by_user.clear();
    }

    /// Counts a realtime connection as running until the guard is dropped.
    pub fn track(&self) -> ConnectionGuard {
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.clone())
    }

    /// Waits until every tracked connection has finished (after [`Hub::close_all`]), at most
    /// `limit`.
    pub async fn drained(&self, limit: std::time::Duration) {
        let wait = async {
            while self.inner.active.load(Ordering::Acquire) > 0 {
                let notified = self.inner.idle.notified();
                if self.inner.active.load(Ordering::Acquire) == 0 {
                    break;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

    /// Drops every subscription as lagging (the feed itself fell behind); clients resume.
    fn drop_all(&self) {
        let mut subs = self.inner.subs.lock();
        for list in subs.by_user.values_mut() {
            for s in list.drain(..) {
                s.lagged.store(true, Ordering::Release);
            }
        }
    }

    /// Runs the hub over a feed of committed event batches until the feed closes.
    pub async fn run(self, store: Store, mut feed: broadcast::Receiver<Arc<Vec<Event>>>) {
        let mut members: HashMap<String, HashMap<UserId, Seq>> = HashMap::new();
        let mut sessions = tokio::time::interval(SESSION_CHECK);
        sessions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                r = feed.recv() => r,
                _ = sessions.tick() => {
                    self.check_sessions(&store).await;
                    continue;
                }
            };
            match received {
                Ok(batch) => {
                    for e in batch.iter() {
                        self.offer(&store, &mut members, e).await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "hub fell behind its feed; dropping connections");
                    members.clear();
                    self.drop_all();
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    async fn offer(
        &self,
        store: &Store,
        members: &mut HashMap<String, HashMap<UserId, Seq>>,
        e: &Event,
    ) {
        // A new message names neither a member nor an earlier message: its payload, the bulk
        // of the log, stays unparsed here.
        let typed = (e.kind != ev::MESSAGE_NEW)
            .then(|| e.typed().ok())
            .flatten();
        let subject = typed
            .as_ref()
            .and_then(EventData::member)
            .map(str::to_owned);
        let audience: Vec<UserId> = match &e.audience {
            Audience::User(u) => vec![u.clone()],
            Audience::Conversation(conv) => {
                if !members.contains_key(conv) && self.has_subscribers() {
                    let (c, seq) = (conv.clone(), e.seq);
                    match store
                        .read(move |db| participants::members_at(db, &c, seq))
                        .await
                    {
                        Ok(list) => {
                            members.insert(conv.clone(), list.into_iter().collect());
                        }
                        Err(err) => {
                            // Without the members nobody can be served exactly: everyone resumes.
                            tracing::error!(error = %err.message, "hub could not load members");
                            self.drop_all();
                        }
                    }
                }
                // A change to a message goes only to those who could see the message itself.
                let created = typed.as_ref().and_then(EventData::created_seq);
                let mut audience = Vec::new();
                let mut doubtful = Vec::new();
                if let Some(set) = members.get_mut(conv) {
                    if e.kind == ev::PARTICIPANT_ADD {
                        if let Some(u) = &subject {
                            set.insert(u.clone(), e.seq);
                        }
                    }
                    for (u, joined) in set.iter() {
                        match created {
                            Some(c) if *joined > c => doubtful.push(u.clone()),
                            _ => audience.push(u.clone()),
                        }
                    }
                }
                // Joined after the message: only a connected member who was also there when it
                // was created (an earlier membership) gets the change.
                for u in doubtful {
                    if !self.is_subscribed(&u) {
                        continue;
                    }
                    let (c, user, created) = (conv.clone(), u.clone(), created.unwrap_or_default());
                    let saw = store
                        .read(move |db| {
                            Ok(participants::intervals_in(db, &user, &c)?
                                .iter()
                                .any(|i| i.contains(created)))
                        })
                        .await;
                    match saw {
                        Ok(true) => audience.push(u),
                        Ok(false) => {}
                        Err(_) => self.drop_user(&u),
                    }
                }
                audience
            }
        };
        if !audience.is_empty() {
            let d = Delivery::Event(Arc::new(Delivered::new(e.clone())));
            self.deliver(&audience, &d);
        }
        if e.kind == ev::PARTICIPANT_REMOVE {
            if let (Audience::Conversation(conv), Some(u)) = (&e.audience, &subject) {
                if let Some(set) = members.get_mut(conv) {
                    set.remove(u);
                }
            }
        }
        self.inner.position.store(e.seq, Ordering::Release);
    }
}
