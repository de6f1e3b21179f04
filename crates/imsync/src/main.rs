//! `imsync`: the server binary.
#![forbid(unsafe_code)]

mod config;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{Config, ServeArgs};
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

// A request makes many small allocations that often die on another thread (events are made on
// the writer, freed by the hub): glibc's malloc spent about a third of the workers' time there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (args, migrate_only) = match cli.command {
        Some(Command::Serve(a)) => (a, false),
        Some(Command::Migrate(a)) => (a, true),
        // No command means `serve`, still reading its settings from the environment.
        None => match Cli::parse_from(["imsync", "serve"]).command {
            Some(Command::Serve(a)) => (a, false),
            _ => unreachable!("parsed as serve"),
        },
    };
    let config = Config::resolve(args)?;
    init_logging(&config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(config, migrate_only))
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_env("IMSYNC_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(config: Config, migrate_only: bool) -> anyhow::Result<()> {
    let store = match config.backend()? {
        config::Backend::Sqlite(o) => imsync_store::Store::open(&o),
        config::Backend::Postgres(o) => imsync_store::Store::open_postgres(&o).await,
    }
    .map_err(|e| anyhow::anyhow!("opening the database: {}", e.message))?;
    if migrate_only {
        tracing::info!(storage = store.description(), "migrations applied");
        return Ok(());
    }
    let service = imsync_service::Service::new(store, config.service_config());
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let tcp_listener = match config.wukongim_tcp_listen.as_deref() {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr} (--wukongim-tcp-listen)"))?,
        ),
        None => None,
    };
    let mut server_config = config.server_config();
    server_config.wukongim_tcp_addr = tcp_listener.as_ref().and_then(|l| l.local_addr().ok());
    let state = imsync_server::AppState::new(imsync_server::AppParts {
        service,
        metrics: imsync_server::install_recorder(),
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
