//! Configuration: flags, then `IMSYNC_*` environment variables, then an optional TOML file
//! (`--config`), then defaults — the first that sets a value wins.
//!
//! Each setting is declared once, in `settings!` below: its name (the TOML key, and the flag
//! with dashes), its type, its default, its environment variable and its help. From that one
//! line come the clap argument and the TOML key (both in [`ServeArgs`], `None` where not
//! given), the merge of the two, and the value with its default applied (in [`Settings`]).

use anyhow::{bail, Context};
use clap::Args;
use imsync_server::{ServeConfig, ServerConfig, TrustedProxies};
use imsync_service::{files::S3Config, ServiceConfig};
use imsync_store::{Durability, PgOptions, StoreOptions};
use serde::Deserialize;
use std::path::PathBuf;

/// Declares the settings. Each reads
/// `/// help` `name: Type = "default", env "IMSYNC_NAME";` where the default is written as it
/// would be given on the command line; `= unset "what happens"` for a setting that has no value
/// unless given (its value is an `Option`), and `, min N` after the default to raise smaller
/// values to N.
macro_rules! settings {
    (@type [] $ty:ty) => { $ty };
    (@type [unset] $ty:ty) => { Option<$ty> };
    (@value $given:expr, $ty:ty, [], $default:literal, [$($min:literal)?]) => {{
        let value = $given.unwrap_or_else(|| {
            $default.parse::<$ty>().expect(concat!("the default of ", $default))
        });
        $(let value = value.max($min);)?
        value
    }};
    (@value $given:expr, $ty:ty, [unset], $default:literal, []) => { $given };
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $ty:ty = $($unset:ident)? $default:literal $(, min $min:literal)?,
            env $env:literal;
    )+) => {
        /// The settings as given: by flag or environment variable (clap), or in the `--config`
        /// file (serde, which refuses unknown keys); `None` where not given.
        #[derive(Args, Deserialize, Default, Clone)]
        #[cfg_attr(test, derive(serde::Serialize))]
        #[serde(deny_unknown_fields)]
        pub struct ServeArgs {
            /// TOML file with any of the settings below (keys as the flags, with underscores).
            #[arg(long, env = "IMSYNC_CONFIG")]
            #[serde(skip)]
            pub config: Option<PathBuf>,
            $(
                #[arg(long, env = $env, help = help_text(&[$($doc),+], $default))]
                pub $name: Option<$ty>,
            )+
        }

        /// Every setting's value: the one given, else its default.
        #[derive(Clone)]
        #[cfg_attr(test, derive(serde::Serialize))]
        pub struct Settings {
            $(pub $name: settings!(@type [$($unset)?] $ty),)+
        }

        impl std::fmt::Debug for ServeArgs {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct("ServeArgs");
                d.field("config", &self.config);
                $(d.field(stringify!($name), &shown(stringify!($name), &self.$name));)+
                d.finish()
            }
        }

        impl std::fmt::Debug for Settings {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct("Settings");
                $(d.field(stringify!($name), &shown(stringify!($name), &self.$name));)+
                d.finish()
            }
        }

        impl ServeArgs {
            /// Each setting as given in `self`, else as given in `other`.
            fn or(self, other: ServeArgs) -> ServeArgs {
                ServeArgs {
                    config: self.config.or(other.config),
                    $($name: self.$name.or(other.$name),)+
                }
            }

            /// The one place defaults are applied.
            fn or_defaults(self) -> Settings {
                Settings {
                    $($name: settings!(
                        @value self.$name, $ty, [$($unset)?], $default, [$($min)?]
                    ),)+
                }
            }
        }

        /// The declarations, for the tests: each setting's name and default.
        #[cfg(test)]
        const DECLARED: &[Declared] = &[$(Declared {
            name: stringify!($name),
            default: $default,
            unset: stringify!($($unset)?).len() > 0,
        },)+];
    };
}

/// Settings that are secrets, or may carry one (a database URL's password): a debug print of
/// the settings shows `<redacted>` in their place, set or not.
const SECRET: &[&str] = &["database_url", "files_s3_secret_key"];

/// What a debug print of the settings shows of setting `name`.
fn shown<'a>(name: &str, value: &'a dyn std::fmt::Debug) -> &'a dyn std::fmt::Debug {
    if SECRET.contains(&name) {
        &"<redacted>"
    } else {
        value
    }
}

/// A setting's help on the command line: its text, then its default.
fn help_text(doc: &[&str], default: &str) -> String {
    let text = doc
        .iter()
        .map(|line| line.trim())
        .collect::<Vec<_>>()
        .join(" ");
    format!("{} [default: {default}]", text.trim_end_matches('.'))
}

settings! {
    /// Address to listen on.
    listen: String = "127.0.0.1:8080", env "IMSYNC_LISTEN";
    /// Directory for the embedded database.
    data_dir: PathBuf = "imsync-data", env "IMSYNC_DATA_DIR";
    /// Database URL: sqlite://PATH or postgres://USER@HOST:PORT/DB.
    database_url: String = unset "SQLite under --data-dir", env "IMSYNC_DATABASE_URL";
    /// Whether anyone may register: open or closed.
    registration: String = "open", env "IMSYNC_REGISTRATION";
    /// SQLite durability: normal (survives a killed process) or full (fsync per commit).
    durability: String = "normal", env "IMSYNC_DURABILITY";
    /// Session token lifetime in seconds (604800 is 7 days).
    token_ttl_secs: u64 = "604800", env "IMSYNC_TOKEN_TTL_SECS";
    /// Largest accepted request body in bytes.
    max_body_bytes: usize = "1048576", env "IMSYNC_MAX_BODY_BYTES";
    /// Largest accepted file upload in bytes; uploads have their own limit, not the body's.
    max_file_bytes: u64 = "52428800", env "IMSYNC_MAX_FILE_BYTES";
    /// S3-compatible object store for files (http(s)://host:port), instead of the data dir;
    /// what several nodes share.
    files_s3_endpoint: String = unset "files under --data-dir", env "IMSYNC_FILES_S3_ENDPOINT";
    /// The object store's bucket (it must exist).
    files_s3_bucket: String = unset "none", env "IMSYNC_FILES_S3_BUCKET";
    /// The object store's region.
    files_s3_region: String = "us-east-1", env "IMSYNC_FILES_S3_REGION";
    /// The object store's access key id.
    files_s3_access_key: String = unset "none", env "IMSYNC_FILES_S3_ACCESS_KEY";
    /// The object store's secret key (better given by environment or file than by flag).
    files_s3_secret_key: String = unset "none", env "IMSYNC_FILES_S3_SECRET_KEY";
    /// Object store URLs: path (endpoint/bucket/key) or virtual-host (bucket.endpoint/key).
    files_s3_url_style: String = "path", env "IMSYNC_FILES_S3_URL_STYLE";
    /// Requests per second per client address; 0 turns the limit off.
    rate_limit: u32 = "0", env "IMSYNC_RATE_LIMIT";
    /// Reverse proxies (CIDR blocks or addresses, comma-separated) whose X-Forwarded-For names
    /// the client.
    trusted_proxies: String = unset "none", env "IMSYNC_TRUSTED_PROXIES";
    /// Log format: text or json.
    log_format: String = "text", env "IMSYNC_LOG_FORMAT";
    // A zero timeout would close every connection before its first request, a zero count
    // would serve none: these are at least 1.
    /// Close a WebSocket that sent nothing (not even a ping) for this many seconds.
    ws_idle_timeout_secs: u64 = "120", min 1, env "IMSYNC_WS_IDLE_TIMEOUT_SECS";
    /// Close a connection that took this many seconds to send a request's head.
    header_timeout_secs: u64 = "10", min 1, env "IMSYNC_HEADER_TIMEOUT_SECS";
    /// Close a connection that took this many seconds to send a request's body.
    body_timeout_secs: u64 = "30", min 1, env "IMSYNC_BODY_TIMEOUT_SECS";
    /// Close a keep-alive connection idle between requests this many seconds.
    keepalive_timeout_secs: u64 = "60", min 1, env "IMSYNC_KEEPALIVE_TIMEOUT_SECS";
    /// Connections served at once, WebSockets included; more wait to be accepted.
    max_connections: usize = "10000", min 1, env "IMSYNC_MAX_CONNECTIONS";
    /// On SIGTERM, seconds the open connections get to finish before they are dropped.
    shutdown_grace_secs: u64 = "10", env "IMSYNC_SHUTDOWN_GRACE_SECS";
    /// PostgreSQL read connections per node.
    pg_pool_size: usize = "16", min 1, env "IMSYNC_PG_POOL_SIZE";
    /// PostgreSQL statement timeout in milliseconds.
    pg_statement_timeout_ms: u64 = "30000", env "IMSYNC_PG_STATEMENT_TIMEOUT_MS";
    /// PostgreSQL schema for imsync's tables (created if missing).
    pg_schema: String = unset "the search path", env "IMSYNC_PG_SCHEMA";
    /// Id of the public channel every Rocket.Chat user is put in; empty for none.
    default_channel: String = "GENERAL", env "IMSYNC_DEFAULT_CHANNEL";
    /// Address of the WuKongIM socket on plain TCP (what native TangSengDaoDao apps use).
    wukongim_tcp_listen: String = unset "no TCP listener", env "IMSYNC_WUKONGIM_TCP_LISTEN";
}

impl ServeArgs {
    /// The settings given here, then those of the `--config` file where these give none.
    fn with_file(self) -> anyhow::Result<ServeArgs> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: ServeArgs =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(self.or(file))
    }
}

/// The resolved configuration: every setting's value (through `Deref`), checked, and the ones
/// that are names parsed.
#[derive(Debug, Clone)]
pub struct Config {
    settings: Settings,
    pub registration_open: bool,
    pub durability: Durability,
    pub trusted_proxies: TrustedProxies,
    pub files_s3: Option<S3Config>,
}

impl std::ops::Deref for Config {
    type Target = Settings;

    fn deref(&self) -> &Settings {
        &self.settings
    }
}

/// Which database the server runs on.
pub enum Backend {
    Sqlite(StoreOptions),
    Postgres(PgOptions),
}

impl Config {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
        let settings = args.with_file()?.or_defaults();
        let registration_open = match settings.registration.as_str() {
            "open" => true,
            "closed" => false,
            other => bail!("--registration must be open or closed, not {other:?}"),
        };
        let durability = Durability::parse(&settings.durability).with_context(|| {
            format!(
                "--durability must be normal or full, not {:?}",
                settings.durability
            )
        })?;
        let log_format = &settings.log_format;
        if log_format != "text" && log_format != "json" {
            bail!("--log-format must be text or json, not {log_format:?}");
        }
        let trusted_proxies =
            TrustedProxies::parse(settings.trusted_proxies.as_deref().unwrap_or(""))
                .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?;
        let files_s3 = files_s3(&settings)?;
        Ok(Config {
            settings,
            registration_open,
            durability,
            trusted_proxies,
            files_s3,
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
        let default_channel = self.default_channel.trim();
        ServiceConfig {
            registration_open: self.registration_open,
            token_ttl_ms: (self.token_ttl_secs as i64).saturating_mul(1000),
            // An empty id turns the default channel off.
            default_channel: (!default_channel.is_empty()).then(|| default_channel.to_owned()),
            files_dir: Some(self.data_dir.join("files")),
            files_s3: self.files_s3.clone(),
            max_file_bytes: self.max_file_bytes,
            ..Default::default()
        }
    }

    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            max_body_bytes: self.max_body_bytes,
            rate_limit_per_sec: self.rate_limit,
            ws_idle_timeout: std::time::Duration::from_secs(self.ws_idle_timeout_secs),
            // Set once the listener is bound (its port may be chosen by the system).
            wukongim_tcp_addr: None,
            trusted_proxies: self.trusted_proxies.clone(),
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

/// The object store, when `--files-s3-endpoint` names one: its other settings are then required.
fn files_s3(s: &Settings) -> anyhow::Result<Option<S3Config>> {
    let Some(endpoint) = &s.files_s3_endpoint else {
        return Ok(None);
    };
    let required = |value: &Option<String>, flag: &str| match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(anyhow::anyhow!(
            "--{flag} is required with --files-s3-endpoint"
        )),
    };
    let path_style = match s.files_s3_url_style.as_str() {
        "path" => true,
        "virtual-host" => false,
        other => bail!("--files-s3-url-style must be path or virtual-host, not {other:?}"),
    };
    let config = S3Config {
        endpoint: endpoint.clone(),
        bucket: required(&s.files_s3_bucket, "files-s3-bucket")?,
        region: s.files_s3_region.clone(),
        access_key: required(&s.files_s3_access_key, "files-s3-access-key")?,
        secret_key: required(&s.files_s3_secret_key, "files-s3-secret-key")?,
        path_style,
    };
    config
        .check()
        .map_err(|e| anyhow::anyhow!("--files-s3-endpoint: {}", e.message))?;
    Ok(Some(config))
}

/// A setting as [`settings!`] declares it.
#[cfg(test)]
struct Declared {
    /// The TOML key, the clap id, and the flag with dashes.
    name: &'static str,
    /// As given on the command line; for an `unset` setting, what happens without one.
    default: &'static str,
    unset: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;
    use std::path::Path;

    #[test]
    fn a_debug_print_of_the_settings_shows_no_secret() {
        let args = ServeArgs {
            database_url: Some("postgres://imsync:hunter2-db@db/imsync".into()),
            files_s3_endpoint: Some("http://s3.local:9000".into()),
            files_s3_bucket: Some("files".into()),
            files_s3_access_key: Some("AKIDEXAMPLE".into()),
            files_s3_secret_key: Some("hunter2-s3".into()),
            ..Default::default()
        };
        let c = Config::resolve(args.clone()).unwrap();
        let Backend::Postgres(pg) = c.backend().unwrap() else {
            panic!("a postgres:// URL is PostgreSQL")
        };
        for printed in [
            format!("{args:?}"),
            format!("{c:?}"),
            format!("{:?}", *c),
            format!("{pg:?}"),
        ] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains("<redacted>"), "{printed}");
        }
        assert!(format!("{c:?}").contains("AKIDEXAMPLE"));
    }

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
        let proxies = |list: &str| {
            Config::resolve(ServeArgs {
                trusted_proxies: Some(list.into()),
                ..Default::default()
            })
        };
        let c = proxies("10.0.0.0/8, 127.0.0.1").unwrap();
        assert_eq!(
            c.trusted_proxies,
            TrustedProxies::parse("10.0.0.0/8,127.0.0.1/32").unwrap()
        );
        let refused = format!("{:#}", proxies("10.0.0.0/8,nginx").unwrap_err());
        assert!(
            refused.contains("--trusted-proxies") && refused.contains("nginx"),
            "{refused}"
        );
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

    fn command() -> clap::Command {
        ServeArgs::augment_args(clap::Command::new("imsync"))
    }

    fn arg<'a>(command: &'a clap::Command, id: &str) -> &'a clap::Arg {
        command
            .get_arguments()
            .find(|a| a.get_id() == id)
            .unwrap_or_else(|| panic!("no argument {id}"))
    }

    /// A value of a TOML table, strings without their quotes.
    fn text(table: &toml::Table, key: &str) -> Option<String> {
        table.get(key).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// For every declared setting and every combination of flag, environment variable and TOML
    /// key: the flag wins, then the variable, then the file.
    #[test]
    fn every_setting_is_set_by_flag_then_env_then_toml_key() {
        let cmd = command();
        let dir = tempfile::tempdir().unwrap();
        // This is the one test that reads the environment: none of the caller's IMSYNC_* counts.
        for a in cmd.get_arguments() {
            if let Some(env) = a.get_env() {
                std::env::remove_var(env);
            }
        }
        for setting in DECLARED {
            let arg = arg(&cmd, setting.name);
            let flag = format!("--{}", arg.get_long().unwrap());
            let env = arg.get_env().unwrap();
            // In the file as a number where the setting is one, else as a string.
            let file = dir.path().join(format!("{}.toml", setting.name));
            let toml_line = [
                format!("{} = 13\n", setting.name),
                format!("{} = \"13\"\n", setting.name),
            ]
            .into_iter()
            .find(|line| toml::from_str::<ServeArgs>(line).is_ok())
            .unwrap_or_else(|| panic!("{} is not a TOML key", setting.name));
            std::fs::write(&file, toml_line).unwrap();
            for given in 0..8 {
                let (by_flag, by_env, by_file) = (given & 1 != 0, given & 2 != 0, given & 4 != 0);
                let mut argv = vec!["imsync".to_owned()];
                if by_flag {
                    argv.extend([flag.clone(), "11".to_owned()]);
                }
                if by_file {
                    argv.extend(["--config".to_owned(), file.display().to_string()]);
                }
                if by_env {
                    std::env::set_var(env, "12");
                } else {
                    std::env::remove_var(env);
                }
                // clap reads the variables as it builds the command.
                let matches = command().try_get_matches_from(&argv).unwrap();
                let args = ServeArgs::from_arg_matches(&matches)
                    .unwrap()
                    .with_file()
                    .unwrap();
                let expected = [(by_flag, "11"), (by_env, "12"), (by_file, "13")]
                    .into_iter()
                    .find(|(given, _)| *given)
                    .map(|(_, value)| value.to_owned());
                assert_eq!(
                    text(&toml::Table::try_from(&args).unwrap(), setting.name),
                    expected,
                    "{} by flag: {by_flag}, by {env:?}: {by_env}, in the file: {by_file}",
                    setting.name,
                );
            }
            std::env::remove_var(env);
        }
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let settings = toml::Table::try_from(ServeArgs::default().or_defaults()).unwrap();
        for setting in DECLARED {
            let expected = (!setting.unset).then(|| setting.default.to_owned());
            assert_eq!(text(&settings, setting.name), expected, "{}", setting.name);
        }
        let zero = ServeArgs {
            header_timeout_secs: Some(0),
            shutdown_grace_secs: Some(0),
            ..Default::default()
        }
        .or_defaults();
        assert_eq!((zero.header_timeout_secs, zero.shutdown_grace_secs), (1, 0));
    }

    #[test]
    fn bad_toml_is_refused_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imsync.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let args = ServeArgs {
                config: Some(path.clone()),
                ..Default::default()
            };
            format!("{:#}", Config::resolve(args).unwrap_err())
        };
        let unknown = resolve("listen = \"x\"\nconfig = \"other.toml\"\n");
        assert!(unknown.contains("unknown field `config`"), "{unknown}");
        let mistyped = resolve("rate_limit = \"5\"\n");
        assert!(mistyped.contains("rate_limit"), "{mistyped}");
        let refused = resolve("log_format = \"xml\"\n");
        assert!(
            refused.contains("--log-format must be text or json"),
            "{refused}"
        );
    }

    /// README.md's configuration table (its rows starting with "| `--") lists the settings as
    /// declared, in their order: flag, environment variable, TOML key and default.
    #[test]
    fn the_readme_table_matches_the_declarations() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
        // A cell's code (the first `…` where it starts with one), else its text.
        let code = |cell: &str| match cell.trim().strip_prefix('`') {
            Some(rest) => rest.split('`').next().unwrap().to_owned(),
            None => cell.trim().replace('`', ""),
        };
        let in_readme: Vec<[String; 4]> = readme
            .lines()
            .filter(|line| line.starts_with("| `--"))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
                let flag = code(cells[0]).split(' ').next().unwrap().to_owned();
                [flag, code(cells[1]), code(cells[2]), code(cells[3])]
            })
            .collect();
        let command = command();
        let declared: Vec<[String; 4]> = command
            .get_arguments()
            .map(|arg| {
                let flag = format!("--{}", arg.get_long().unwrap());
                let env = arg.get_env().unwrap().to_string_lossy().into_owned();
                let (key, default) = match DECLARED.iter().find(|s| s.name == arg.get_id()) {
                    Some(s) => (s.name, s.default),
                    None => ("—", "none"),
                };
                [flag, env, key.to_owned(), default.to_owned()]
            })
            .collect();
        assert_eq!(in_readme, declared);
    }
}
