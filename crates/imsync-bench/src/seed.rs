//! The bulk-load path: `imsync-bench seed` opens a data dir in-process with
//! `imsync_store::Store::open` and `imsync_service::Service` and builds a history through the
//! service's own commands (the same rules, events and indexes as the API), only without HTTP.
//! Hundreds of concurrent tasks keep the store's single writer busy, so it commits in batches.
//!
//! The layout (for `incr-sync`): `users` users, user 0 being the caller; `convs` small groups,
//! group j owned by user `1 + j % (users-1)` with two more members, the caller in the first
//! `caller_convs` of them. Messages go to groups chosen at random, so the caller sees about
//! `caller_convs / convs` of the history. Run again with a larger `--events`, it extends the same
//! data dir (users and groups are kept in `bench-seed.json` beside the database) until the event
//! log holds that many events.

use crate::scenarios::splitmix;
use anyhow::{Context, Result};
use imsync_service::{NewAccount, NewMessage, Service, ServiceConfig};
use imsync_store::{Durability, Store, StoreOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct SeedArgs {
    pub data_dir: PathBuf,
    pub users: usize,
    pub convs: usize,
    pub caller_convs: usize,
    /// Target size of the event log.
    pub events: i64,
    pub durability: Durability,
    pub concurrency: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeededConv {
    pub id: String,
    pub owner: usize,
}

/// What a seeded data dir holds, for the harness to act as its users.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// `(username, token)`; index 0 is the caller.
    pub users: Vec<(String, String)>,
    pub convs: Vec<SeededConv>,
    pub caller_convs: usize,
    /// The head of the event log when seeding ended.
    pub head: i64,
    pub messages: u64,
    /// Messages per second of the last seeding run.
    pub last_rate: f64,
}

pub fn manifest_path(data_dir: &Path) -> PathBuf {
    data_dir.join("bench-seed.json")
}

pub fn read_manifest(data_dir: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(manifest_path(data_dir))?;
    Ok(serde_json::from_str(&text)?)
}

fn err(e: imsync_core::Error) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code, e.message)
}

/// Seeds (or extends) `args.data_dir`; answers the manifest it wrote.
pub async fn seed(args: &SeedArgs) -> Result<Manifest> {
    std::fs::create_dir_all(&args.data_dir)?;
    let store = Store::open(&StoreOptions {
        sqlite_path: args.data_dir.join("imsync.db"),
        durability: args.durability,
    })
    .map_err(err)?;
    let service = Service::new(
        store,
        ServiceConfig {
            default_channel: None,
            ..Default::default()
        },
    );
    let conc = args.concurrency.max(1);
    let mut manifest = match read_manifest(&args.data_dir) {
        Ok(m) => m,
        Err(_) => create_layout(&service, args, conc).await?,
    };
    // The acting users, as the service knows them (owners only).
    let owners: Vec<usize> = {
        let mut o: Vec<usize> = manifest.convs.iter().map(|c| c.owner).collect();
        o.sort_unstable();
        o.dedup();
        o
    };
    let mut users = vec![None; manifest.users.len()];
    for &o in &owners {
        users[o] = Some(
            service
                .user_by_username(&manifest.users[o].0)
                .await
                .map_err(err)?,
        );
    }
    let users = Arc::new(users);
    let convs = Arc::new(manifest.convs.clone());
    let head = |s: &Service| {
        let s = s.clone();
        async move {
            s.store()
                .read(imsync_store::repo::events::head)
                .await
                .map_err(err)
        }
    };
    let mut now = head(&service).await?;
    let mut per_msg = 1.0f64;
    let started = Instant::now();
    let mut sent_total = 0usize;
    let mut round = 0usize;
    while now < args.events && round < 20 {
        round += 1;
        let mut n = ((args.events - now) as f64 / per_msg).ceil() as usize;
        if round == 1 {
            n = n.min(2000);
        }
        let next = Arc::new(AtomicUsize::new(0));
        let base = manifest.messages as usize + sent_total;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..conc {
            let (service, users, convs, next) =
                (service.clone(), users.clone(), convs.clone(), next.clone());
            tasks.spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= n {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let k = base + k;
                    let conv = &convs[(splitmix(k as u64) % convs.len() as u64) as usize];
                    let me = users[conv.owner].as_ref().context("owner not loaded")?;
                    service
                        .send(
                            me,
                            &conv.id,
                            NewMessage {
                                content: format!("seeded history message {k:09}"),
                                ..Default::default()
                            },
                        )
                        .await
                        .map_err(err)?;
                }
            });
        }
        let progress = crate::progress::Progress::start("seed messages", n as u64, "msgs");
        let watch = {
            let (next, done) = (next.clone(), progress.done.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    done.store(
                        next.load(Ordering::Relaxed).min(n) as u64,
                        Ordering::Relaxed,
                    );
                }
            })
        };
        while let Some(r) = tasks.join_next().await {
            r.context("seed task panicked")??;
        }
        watch.abort();
        progress.done.store(n as u64, Ordering::Relaxed);
        progress.finish().await;
        let before = now;
        now = head(&service).await?;
        sent_total += n;
        if n > 0 {
            per_msg = ((now - before) as f64 / n as f64).max(0.01);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    manifest.head = now;
    manifest.messages += sent_total as u64;
    manifest.last_rate = crate::report::ratio(sent_total as f64, secs);
    let path = manifest_path(&args.data_dir);
    std::fs::write(&path, serde_json::to_string(&manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(manifest)
}

async fn create_layout(service: &Service, args: &SeedArgs, conc: usize) -> Result<Manifest> {
    let n_users = args.users.max(3);
    let tag = crate::scenarios::run_tag();
    let names: Vec<String> = (0..n_users).map(|u| format!("is{tag}u{u}")).collect();
    let s = service.clone();
    let sessions = crate::scenarios::concurrently("seed users", names, conc, move |name| {
        let s = s.clone();
        async move {
            let session = s
                .register(
                    None,
                    NewAccount {
                        username: name.clone(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(err)?;
            Ok((session.user, session.token))
        }
    })
    .await?;
    let users: Arc<Vec<_>> = Arc::new(sessions.iter().map(|(u, _)| u.clone()).collect());
    let others = n_users - 1;
    let caller_convs = args.caller_convs.min(args.convs);
    let (s, u) = (service.clone(), users.clone());
    let convs =
        crate::scenarios::concurrently("seed groups", (0..args.convs).collect(), conc, move |j| {
            let (s, u) = (s.clone(), u.clone());
            async move {
                let owner = 1 + j % others;
                let mut members = vec![
                    u[1 + (j * 7 + 3) % others].username.clone(),
                    u[1 + (j * 13 + 5) % others].username.clone(),
                ];
                if j < caller_convs {
                    members.push(u[0].username.clone());
                }
                let c = s
                    .create_group(&u[owner], format!("seeded {j}"), None, None, members, false)
                    .await
                    .map_err(err)?;
                Ok(SeededConv {
                    id: c.conversation.id,
                    owner,
                })
            }
        })
        .await?;
    Ok(Manifest {
        users: sessions.into_iter().map(|(u, t)| (u.username, t)).collect(),
        convs,
        caller_convs,
        head: 0,
        messages: 0,
        last_rate: 0.0,
    })
}
