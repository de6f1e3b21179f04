//! The service: every command and query of imsync, with its rules (who may do what, validation),
//! shared by all faces. A command runs as one write job on the store, so its checks and its
//! changes happen in the same transaction; its events are appended in that transaction too.
#![forbid(unsafe_code)]

mod accounts;
pub mod admin;
mod contacts;
mod conversations;
pub mod files;
pub mod hub;
mod messages;
pub mod payload;
mod sessions;
mod sync;
mod visibility;

// The faces' own commands and reads, one folder each.
pub mod rocketchat;
pub mod tsdd;

pub use accounts::{NewAccount, Password, ProfilePatch, Session, Stats};
pub use contacts::{FriendView, RequestOutcome, RequestView};
pub use conversations::{ConversationPatch, ConversationSummary, ConversationWithMembers, Member};
pub use imsync_store::repo::events::RawEvent;
pub use imsync_store::repo::users::Account;
pub use messages::{HistoryPage, NewMessage, SendOutcome};
pub use rocketchat::{
    ChangeSet, MessageView, PublicRoom, RoomChanges, RoomView, ThreadChanges, ThreadFilter,
    TimeWindow,
};
pub use sync::{RawSyncPage, SyncPage};
pub use tsdd::{
    Channel, ChannelMessage, ChannelPage, ChannelRange, ConversationExtra, ConversationSync,
    ConversationSyncRequest, ExtraPatch, ExtraView, GroupInfo, MessageRef, Names, ReactionRow,
    SyncedConversation, REVOKED_BY_KEY,
};

use imsync_core::model::User;
use imsync_core::Result;
use imsync_store::Store;
use std::sync::Arc;

/// The default file size limit: what the Prismer SDK allows.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 50 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub registration_open: bool,
    pub token_ttl_ms: i64,
    /// Events queued per realtime connection before it is closed as lagging.
    pub realtime_queue: usize,
    /// The public channel every account that uses the Rocket.Chat face is put in (its id);
    /// `None` for none.
    pub default_channel: Option<String>,
    /// Rocket.Chat's `Threads_enabled` setting: when off, its thread endpoints refuse.
    pub threads_enabled: bool,
    /// Where uploaded files are kept; `None` turns the file calls off (they answer 503).
    pub files_dir: Option<std::path::PathBuf>,
    /// An S3-compatible object store for the files instead of `files_dir` (for several nodes).
    pub files_s3: Option<files::S3Config>,
    /// The largest file accepted, in bytes.
    pub max_file_bytes: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            registration_open: true,
            token_ttl_ms: 7 * 24 * 3600 * 1000,
            realtime_queue: hub::DEFAULT_QUEUE,
            default_channel: Some("GENERAL".to_owned()),
            threads_enabled: true,
            files_dir: None,
            files_s3: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Something a face does for every new account, inside the transaction that registers it.
pub trait RegistrationHook: Send + Sync {
    fn on_register(&self, c: &mut dyn imsync_store::SqlConn, user: &User) -> Result<()>;
}

#[derive(Clone)]
pub struct Service {
    store: Store,
    config: Arc<ServiceConfig>,
    hub: hub::Hub,
    sessions: Arc<sessions::SessionCache>,
    registration_hooks: Arc<[Arc<dyn RegistrationHook>]>,
    files: files::FileStore,
}

impl Service {
    /// Builds the service and starts its live hub on the store's commit feed. Must be called
    /// inside a Tokio runtime; the hub stops when the store's writer does.
    pub fn new(store: Store, config: ServiceConfig) -> Self {
        let hub = hub::Hub::new(config.realtime_queue);
        tokio::spawn(hub.clone().run(store.clone(), store.subscribe()));
        // Each face that acts on registration installs its hook here.
        let registration_hooks: Vec<Arc<dyn RegistrationHook>> =
            rocketchat::registration_hooks(&config);
        let service = Service {
            store,
            files: files::FileStore::new(
                config.files_dir.clone(),
                config.files_s3.as_ref(),
                config.max_file_bytes,
            ),
            config: Arc::new(config),
            hub,
            sessions: Arc::default(),
            registration_hooks: registration_hooks.into(),
        };
        service.spawn_file_collector();
        service
    }

    pub fn hub(&self) -> &hub::Hub {
        &self.hub
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// A user by id or, failing that, by username.
    pub async fn find_user(&self, reference: &str) -> Result<User> {
        let reference = reference.to_owned();
        self.store.read(move |c| resolve_user(c, &reference)).await
    }

    pub async fn user_by_username(&self, username: &str) -> Result<User> {
        let username = username.to_owned();
        self.store
            .read(move |c| {
                imsync_store::repo::users::get_by_username(c, &username)?
                    .ok_or_else(|| imsync_core::Error::not_found("User"))
            })
            .await
    }

    pub async fn user(&self, id: &str) -> Result<User> {
        let id = id.to_owned();
        self.store
            .read(move |c| {
                imsync_store::repo::users::get(c, &id)?
                    .ok_or_else(|| imsync_core::Error::not_found("User"))
            })
            .await
    }
}

pub(crate) fn resolve_user(c: &mut dyn imsync_store::SqlConn, reference: &str) -> Result<User> {
    use imsync_store::repo::users;
    if let Some(u) = users::get(c, reference)? {
        return Ok(u);
    }
    if imsync_core::validate::username(reference).is_ok() {
        if let Some(u) = users::get_by_username(c, reference)? {
            return Ok(u);
        }
    }
    Err(imsync_core::Error::new(
        imsync_core::ErrorCode::NotFound,
        format!("User {reference} not found"),
    ))
}
