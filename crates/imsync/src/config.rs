//! Configuration: flags, then `IMSYNC_*` environment variables, then an optional TOML file
//! (`--config`), then defaults — the first that sets a value wins.

use anyhow::{bail, Context};
use clap::Args;
use imsync_server::{ServeConfig, ServerConfig};
use imsync_service::ServiceConfig;
use imsync_store::{Durability, PgOptions, StoreOptions};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, with underscores).
    #[arg(long, env = "IMSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "IMSYNC_LISTEN")]
    pub listen: Option<String>,
    /// Directory for the embedded database [default: ./imsync-data].
    #[arg(long, env = "IMSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST:PORT/DB [default: sqlite under
    /// --data-dir].
    #[arg(long, env = "IMSYNC_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Whether anyone may register: open or closed [default: open].
    #[arg(long, env = "IMSYNC_REGISTRATION")]
    pub registration: Option<String>,
    /// SQLite durability: normal (survives a killed process) or full (fsync per commit)
    /// [default: normal].
    #[arg(long, env = "IMSYNC_DURABILITY")]
    pub durability: Option<String>,
    /// Session token lifetime in seconds [default: 604800, 7 days].
    #[arg(long, env = "IMSYNC_TOKEN_TTL_SECS")]
    pub token_ttl_secs: Option<u64>,
    /// Largest accepted request body in bytes [default: 1048576].
    #[arg(long, env = "IMSYNC_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Requests per second per client address; 0 turns the limit off [default: 0].
    #[arg(long, env = "IMSYNC_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "IMSYNC_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Close a WebSocket that sent nothing (not even a ping) for this many seconds [default: 120].
    #[arg(long, env = "IMSYNC_WS_IDLE_TIMEOUT_SECS")]
    pub ws_idle_timeout_secs: Option<u64>,
    /// Close a connection that took this many seconds to send a request's head [default: 10].
    #[arg(long, env = "IMSYNC_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Close a connection that took this many seconds to send a request's body [default: 30].
    #[arg(long, env = "IMSYNC_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Close a keep-alive connection idle between requests this many seconds [default: 60].
    #[arg(long, env = "IMSYNC_KEEPALIVE_TIMEOUT_SECS")]
    pub keepalive_timeout_secs: Option<u64>,
    /// Connections served at once, WebSockets included; more wait to be accepted
    /// [default: 10000].
    #[arg(long, env = "IMSYNC_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// On SIGTERM, seconds the open connections get to finish before they are dropped
    /// [default: 10].
    #[arg(long, env = "IMSYNC_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// PostgreSQL read connections per node [default: 16].
    #[arg(long, env = "IMSYNC_PG_POOL_SIZE")]
    pub pg_pool_size: Option<usize>,
    /// PostgreSQL statement timeout in milliseconds [default: 30000].
    #[arg(long, env = "IMSYNC_PG_STATEMENT_TIMEOUT_MS")]
    pub pg_statement_timeout_ms: Option<u64>,
    /// PostgreSQL schema for imsync's tables (created if missing) [default: the search path].
    #[arg(long, env = "IMSYNC_PG_SCHEMA")]
    pub pg_schema: Option<String>,
    /// Id of the public channel every Rocket.Chat user is put in; empty for none
    /// [default: GENERAL].
    #[arg(long, env = "IMSYNC_DEFAULT_CHANNEL")]
    pub default_channel: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    registration: Option<String>,
    durability: Option<String>,
    token_ttl_secs: Option<u64>,
    max_body_bytes: Option<usize>,
    rate_limit: Option<u32>,
    log_format: Option<String>,
    ws_idle_timeout_secs: Option<u64>,
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    keepalive_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    pg_pool_size: Option<usize>,
    pg_statement_timeout_ms: Option<u64>,
    pg_schema: Option<String>,
    default_channel: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub registration_open: bool,
    pub durability: Durability,
    pub token_ttl_secs: u64,
    pub max_body_bytes: usize,
    pub rate_limit: u32,
    pub log_format: String,
    pub ws_idle_timeout_secs: u64,
    pub header_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub keepalive_timeout_secs: u64,
    pub max_connections: usize,
    pub shutdown_grace_secs: u64,
    pub pg_pool_size: usize,
    pub pg_statement_timeout_ms: u64,
    pub pg_schema: Option<String>,
    /// `None` when disabled (an empty value).
    pub default_channel: Option<String>,
}

/// Which database the server runs on.
pub enum Backend {
    Sqlite(StoreOptions),
    Postgres(PgOptions),
}

impl Config {
    pub fn resolve(a: ServeArgs) -> anyhow::Result<Config> {
        let f: FileConfig = match &a.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let registration = a
            .registration
            .or(f.registration)
            .unwrap_or_else(|| "open".into());
        let registration_open = match registration.as_str() {
            "open" => true,
            "closed" => false,
            other => bail!("--registration must be open or closed, not {other:?}"),
        };
        let durability_name = a
            .durability
            .or(f.durability)
            .unwrap_or_else(|| "normal".into());
        let durability = Durability::parse(&durability_name).with_context(|| {
            format!("--durability must be normal or full, not {durability_name:?}")
        })?;
        let log_format = a
            .log_format
            .or(f.log_format)
            .unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            bail!("--log-format must be text or json, not {log_format:?}");
        }
        Ok(Config {
            listen: a
                .listen
                .or(f.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            data_dir: a
                .data_dir
                .or(f.data_dir)
                .unwrap_or_else(|| "imsync-data".into()),
            database_url: a.database_url.or(f.database_url),
            registration_open,
            durability,
            token_ttl_secs: a
                .token_ttl_secs
                .or(f.token_ttl_secs)
                .unwrap_or(7 * 24 * 3600),
            max_body_bytes: a.max_body_bytes.or(f.max_body_bytes).unwrap_or(1024 * 1024),
            rate_limit: a.rate_limit.or(f.rate_limit).unwrap_or(0),
            log_format,
            ws_idle_timeout_secs: a
                .ws_idle_timeout_secs
                .or(f.ws_idle_timeout_secs)
                .unwrap_or(120)
                .max(1),
            // A zero timeout would close every connection before its first request.
            header_timeout_secs: a
                .header_timeout_secs
                .or(f.header_timeout_secs)
                .unwrap_or(10)
                .max(1),
            body_timeout_secs: a
                .body_timeout_secs
                .or(f.body_timeout_secs)
                .unwrap_or(30)
                .max(1),
            keepalive_timeout_secs: a
                .keepalive_timeout_secs
                .or(f.keepalive_timeout_secs)
                .unwrap_or(60)
                .max(1),
            max_connections: a
                .max_connections
                .or(f.max_connections)
                .unwrap_or(10_000)
                .max(1),
            shutdown_grace_secs: a
                .shutdown_grace_secs
                .or(f.shutdown_grace_secs)
                .unwrap_or(10),
            pg_pool_size: a.pg_pool_size.or(f.pg_pool_size).unwrap_or(16).max(1),
            pg_statement_timeout_ms: a
                .pg_statement_timeout_ms
                .or(f.pg_statement_timeout_ms)
                .unwrap_or(30_000),
            pg_schema: a.pg_schema.or(f.pg_schema),
            default_channel: match a.default_channel.or(f.default_channel) {
                None => Some("GENERAL".to_owned()),
                Some(s) if s.trim().is_empty() => None,
                Some(s) => Some(s.trim().to_owned()),
            },
        })
    }

    pub fn backend(&self) -> anyhow::Result<Backend> {
        let sqlite_path = match self.database_url.as_deref() {
            None => self.data_dir.join("imsync.db"),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                return Ok(Backend::Postgres(PgOptions {
                    url: url.to_owned(),
                    schema: self.pg_schema.clone(),
                    pool_size: self.pg_pool_size,
                    statement_timeout: std::time::Duration::from_millis(
                        self.pg_statement_timeout_ms,
                    ),
                }))
            }
            Some(url) => match url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
            {
                Some(path) if !path.is_empty() => PathBuf::from(path),
                _ => bail!(
                    "--database-url must look like sqlite://PATH or postgres://..., not {url:?}"
                ),
            },
        };
        Ok(Backend::Sqlite(StoreOptions {
            sqlite_path,
            durability: self.durability,
        }))
    }

    pub fn service_config(&self) -> ServiceConfig {
        ServiceConfig {
            registration_open: self.registration_open,
            token_ttl_ms: (self.token_ttl_secs as i64).saturating_mul(1000),
            default_channel: self.default_channel.clone(),
            ..Default::default()
        }
    }

    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            max_body_bytes: self.max_body_bytes,
            rate_limit_per_sec: self.rate_limit,
            ws_idle_timeout: std::time::Duration::from_secs(self.ws_idle_timeout_secs),
        }
    }

    pub fn serve_config(&self) -> ServeConfig {
        let secs = std::time::Duration::from_secs;
        ServeConfig {
            header_timeout: secs(self.header_timeout_secs),
            body_timeout: secs(self.body_timeout_secs),
            keepalive_timeout: secs(self.keepalive_timeout_secs),
            max_connections: self.max_connections,
            shutdown_grace: secs(self.shutdown_grace_secs),
            max_body_bytes: self.max_body_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn flags_beat_file_and_defaults_fill_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imsync.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nregistration = \"closed\"\nrate_limit = 5\n",
        )
        .unwrap();
        let c = Config::resolve(ServeArgs {
            config: Some(path),
            listen: Some("127.0.0.1:7000".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000");
        assert!(!c.registration_open);
        assert_eq!(c.rate_limit, 5);
        assert_eq!(c.data_dir, PathBuf::from("imsync-data"));
        let serve = c.serve_config();
        assert_eq!(serve.header_timeout, std::time::Duration::from_secs(10));
        assert_eq!(serve.max_connections, 10_000);
        assert!(matches!(c.backend().unwrap(),
            Backend::Sqlite(o) if o.sqlite_path == Path::new("imsync-data/imsync.db")));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Config::resolve(ServeArgs {
            registration: Some("maybe".into()),
            ..Default::default()
        })
        .is_err());
        let c = Config::resolve(ServeArgs {
            database_url: Some("mysql://x".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(c.backend().is_err());
        let c = Config::resolve(ServeArgs {
            database_url: Some("sqlite:///tmp/x.db".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(matches!(c.backend().unwrap(),
            Backend::Sqlite(o) if o.sqlite_path == Path::new("/tmp/x.db")));
        let c = Config::resolve(ServeArgs {
            database_url: Some("postgres://u@h/db".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(matches!(c.backend().unwrap(), Backend::Postgres(o) if o.pool_size == 16));
    }
}
