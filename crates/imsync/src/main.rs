//! `imsync`: the server binary.
#![forbid(unsafe_code)]

mod backup;
mod config;
mod healthcheck;
mod memory;
mod user;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{Config, ServeArgs};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "imsync", version, about = "Offline-first messaging server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Apply the schema migrations and exit.
    Migrate(ServeArgs),
    /// Copy the SQLite database and attachments into DEST, also while the server runs.
    ///
    /// Restoring is starting the server with `--data-dir DEST`.
    Backup(BackupArgs),
    /// Ask the server at `--listen` whether it is up: exit 0 when `/healthz` answers 200.
    ///
    /// For container health checks and service managers; a wildcard `--listen` is probed on
    /// loopback.
    Healthcheck(ServeArgs),
    /// Manage accounts on the server's database, stopped or running: add, list, disable,
    /// enable, reset-password, logout, promote, demote.
    ///
    /// This is how a server with `--registration closed` gets its first admin:
    /// `imsync user add NAME --admin`, with the same database settings as `serve`.
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
}

#[derive(clap::Args)]
struct BackupArgs {
    /// A new or empty directory to hold the copy.
    dest: std::path::PathBuf,
    /// Where the database is, as given to `serve`.
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, migrate_only) = match cli.command {
        Some(Command::Serve(a)) => (a, false),
        Some(Command::Migrate(a)) => (a, true),
        Some(Command::Backup(a)) => return report(backup(a)),
        Some(Command::Healthcheck(a)) => {
            return report(Config::resolve(a).and_then(|c| healthcheck::run(&c.listen)))
        }
        Some(Command::User { command }) => {
            init_cli_logging();
            return report(user::run(command));
        }
        // No command means `serve`, still reading its settings from the environment.
        None => match Cli::parse_from(["imsync", "serve"]).command {
            Some(Command::Serve(a)) => (a, false),
            _ => unreachable!("parsed as serve"),
        },
    };
    report(start(args, migrate_only))
}

fn report(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // What went wrong and what to do, on one line: `anyhow`'s report would add a
            // backtrace whenever RUST_BACKTRACE is set, which tells an operator nothing.
            eprintln!("imsync: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let config = Config::resolve(args.serve)?;
    let copied = backup::run(&config, &args.dest)?;
    println!(
        "imsync: backed up {} database pages and {} attachment files into {}",
        copied.pages,
        copied.files,
        args.dest.display()
    );
    Ok(())
}

fn start(args: ServeArgs, migrate_only: bool) -> anyhow::Result<()> {
    let config = Config::resolve(args)?;
    init_logging(&config.log_format);
    memory::init();
    let runtime = memory::blocking_threads(&mut tokio::runtime::Builder::new_multi_thread())
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(config, migrate_only))
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_env("IMSYNC_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: in a file or a log collector they are noise.
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A command's own output is on stdout; what the store warns of goes to stderr.
fn init_cli_logging() {
    let filter = EnvFilter::try_from_env("IMSYNC_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
}

/// Binds `addr` for `flag`, saying in words what to do when it cannot be.
async fn listen(addr: &str, flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let cause = match e.kind() {
            std::io::ErrorKind::AddrInUse => "address in use".to_owned(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need privileges)".to_owned()
            }
            std::io::ErrorKind::AddrNotAvailable => "no such address on this machine".to_owned(),
            _ => io_cause(&e),
        };
        anyhow::anyhow!("cannot listen on {addr}: {cause}; choose another {flag}")
    })
}

/// An I/O error as words: "permission denied", not "Permission denied (os error 13)".
fn io_cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
}

/// Makes sure the SQLite database can be created and written where it is to be, so that a wrong
/// directory is reported as such rather than as an unavailable database.
fn check_data_dir(path: &Path, flag: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let shown = dir.display();
    std::fs::create_dir_all(dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data directory {shown}: {}; choose another {flag}",
            io_cause(&e)
        )
    })?;
    // SQLite creates its write-ahead log and shared-memory files next to the database.
    let probe = dir.join(format!(".imsync-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => anyhow::bail!(
            "cannot write to the data directory {shown}: {}; give the user running imsync \
             write access to it, or choose another {flag}",
            io_cause(&e)
        ),
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot write to the database {}: {}; give the user running imsync write \
                     access to it",
                    path.display(),
                    io_cause(&e)
                )
            })?;
    }
    Ok(())
}

/// Opens (creating and migrating where needed) the database the settings name.
async fn open_store(
    config: &Config,
    backend: config::Backend,
) -> anyhow::Result<imsync_store::Store> {
    match backend {
        config::Backend::Sqlite(o) => {
            let flag = match config.database_url {
                Some(_) => "--database-url",
                None => "--data-dir",
            };
            check_data_dir(&o.sqlite_path, flag)?;
            imsync_store::Store::open(&o)
        }
        config::Backend::Postgres(o) => {
            imsync_store::Store::open_postgres(&o)
                .await
                .map_err(|mut e| {
                    if e.message.starts_with("cannot connect") {
                        e.message.push_str(
                            "; check --database-url: is PostgreSQL running there, and does the \
                             database exist?",
                        );
                    }
                    e
                })
        }
    }
    .map_err(|e| anyhow::anyhow!("opening the database: {}", e.message))
}

async fn run(config: Config, migrate_only: bool) -> anyhow::Result<()> {
    let backend = config.backend()?;
    // The ports first: a server that cannot listen must not have created or migrated anything.
    let listeners = match migrate_only {
        true => None,
        false => {
            let http = listen(&config.listen, "--listen").await?;
            let tcp = match config.wukongim_tcp_listen.as_deref() {
                Some(addr) => Some(listen(addr, "--wukongim-tcp-listen").await?),
                None => None,
            };
            Some((http, tcp))
        }
    };
    let metrics = imsync_server::install_recorder();
    let store = open_store(&config, backend).await?;
    let Some((listener, tcp_listener)) = listeners else {
        tracing::info!(storage = store.description(), "migrations applied");
        return Ok(());
    };
    let service = imsync_service::Service::new(store, config.service_config());
    service
        .check_file_store()
        .await
        .map_err(|e| anyhow::anyhow!("the object store (--files-s3-*): {}", e.message))?;
    let mut server_config = config.server_config();
    server_config.wukongim_tcp_addr = tcp_listener.as_ref().and_then(|l| l.local_addr().ok());
    let state = imsync_server::AppState::new(imsync_server::AppParts {
        service,
        metrics,
        config: Arc::new(server_config),
    });
    tracing::info!(
        listen = %listener.local_addr()?,
        wukongim_tcp = ?state.config.wukongim_tcp_addr,
        storage = state.service.store().description(),
        "imsync is ready"
    );
    let hub = state.service.hub().clone();
    let closer = hub.clone();
    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests, closing realtime connections");
        // Realtime connections end with "going away" so that in-flight requests can finish.
        closer.close_all();
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let tcp = tcp_listener.map(|l| {
        tokio::spawn(imsync_server::wukongim::serve_tcp(
            l,
            state.clone(),
            config.serve_config(),
            stopped(stop_rx.clone()),
        ))
    });
    let app = imsync_server::router(state);
    imsync_server::serve(listener, app, config.serve_config(), stopped(stop_rx))
        .await
        .context("serving")?;
    if let Some(tcp) = tcp {
        tcp.await
            .context("the WuKongIM TCP listener panicked")?
            .context("serving WuKongIM on TCP")?;
    }
    // Upgraded connections outlive the HTTP server: let them send their close frames.
    hub.close_all();
    hub.drained(std::time::Duration::from_secs(5)).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
