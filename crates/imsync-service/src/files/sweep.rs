//! The file collector: what no message needs any more leaves the store.
//!
//! - A file whose messages are all deleted is removed [`GRACE_MS`] after the last deletion (a
//!   client that rendered the message a moment before can still fetch it).
//! - An upload never finished (announced, or uploaded and never confirmed) is removed
//!   [`ORPHAN_MS`] after it was last touched.
//! - Bytes without a record (a temporary file, parts, or a file left by a process that died
//!   between its two steps) are removed once they are [`ORPHAN_MS`] old.
//!
//! Each record is removed in a write that checks the condition again, so a send racing the
//! collector either links a file that stays or finds it gone; its bytes go after the record.

use super::disk::Disk;
use super::s3::ObjectStore;
use super::Backend;
use crate::Service;
use imsync_core::{time::now_ms, Result};
use imsync_store::repo::files;
use std::path::Path;
use std::time::Duration;

/// How long a file outlives the deletion of the last message that carried it.
pub const GRACE_MS: i64 = 24 * 3600 * 1000;
/// How long an unfinished upload or stray bytes are kept.
pub const ORPHAN_MS: i64 = 24 * 3600 * 1000;
/// How often the collector runs.
pub const EVERY: Duration = Duration::from_secs(600);
/// Records looked at per query.
const BATCH: i64 = 500;

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Files whose messages were all deleted.
    pub unreferenced: usize,
    /// Unfinished uploads.
    pub stale: usize,
    /// Files on disk without a record.
    pub stray: usize,
}

impl Service {
    /// Runs the collector every [`EVERY`] while the service lives; started with the service
    /// when it has a file store.
    pub(crate) fn spawn_file_collector(&self) {
        if self.files.backend.is_none() {
            return;
        }
        let service = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                match service.sweep_files(now_ms()).await {
                    Ok(s) if s != Swept::default() => tracing::info!(?s, "files collected"),
                    Ok(_) => {}
                    Err(e) if e.code == imsync_core::ErrorCode::Unavailable => {
                        tracing::debug!("the store is closed: the file collector stops");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "the file collector failed"),
                }
            }
        });
    }

    /// One sweep as of `now` (epoch ms).
    pub async fn sweep_files(&self, now: i64) -> Result<Swept> {
        let backend = self.files.backend()?.clone();
        let mut swept = Swept::default();
        loop {
            let ids = self
                .store
                .read(move |c| files::unreferenced(c, now - GRACE_MS, BATCH))
                .await?;
            let n = ids.len();
            for id in ids {
                let gone = self
                    .store
                    .write({
                        let id = id.clone();
                        move |c| {
                            if files::unreferenced(c, now - GRACE_MS, i64::MAX)?.contains(&id) {
                                files::delete(c, &id)
                            } else {
                                Ok(false)
                            }
                        }
                    })
                    .await?;
                if gone {
                    backend.remove(&id).await;
                    swept.unreferenced += 1;
                }
            }
            if (n as i64) < BATCH {
                break;
            }
        }
        loop {
            let ids = self
                .store
                .read(move |c| files::stale_uploads(c, now - ORPHAN_MS, BATCH))
                .await?;
            let n = ids.len();
            for id in ids {
                let gone = self
                    .store
                    .write({
                        let id = id.clone();
                        move |c| match files::get(c, &id)? {
                            Some(f)
                                if f.state != files::FileState::Ready
                                    && f.updated_at < now - ORPHAN_MS =>
                            {
                                files::delete(c, &id)
                            }
                            _ => Ok(false),
                        }
                    })
                    .await?;
                if gone {
                    backend.remove(&id).await;
                    swept.stale += 1;
                }
            }
            if (n as i64) < BATCH {
                break;
            }
        }
        swept.stray = match &*backend {
            Backend::Disk(disk) => self.sweep_stray(disk, now).await?,
            Backend::S3(objects) => self.sweep_stray_objects(objects, now).await?,
        };
        let removed = swept.unreferenced + swept.stale + swept.stray;
        metrics::counter!("imsync_files_collected_total").increment(removed as u64);
        Ok(swept)
    }

    /// Removes old bytes that no record names: temporary files, parts and whole files.
    async fn sweep_stray(&self, disk: &Disk, now: i64) -> Result<usize> {
        let mut removed = 0;
        for (path, is_dir) in old_entries(&disk.tmp_dir(), now).await {
            if !is_dir && tokio::fs::remove_file(&path).await.is_ok() {
                removed += 1;
            }
        }
        for (root, want_dir) in [
            (disk.parts_root(), true),
            (disk.root().to_path_buf(), false),
        ] {
            for (path, is_dir) in old_entries(&root, now).await {
                if is_dir != want_dir {
                    continue;
                }
                let Some(id) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                    continue;
                };
                let known = {
                    let id = id.clone();
                    self.store.read(move |c| files::get(c, &id)).await?
                };
                if known.is_some() {
                    continue;
                }
                let done = if is_dir {
                    tokio::fs::remove_dir_all(&path).await
                } else {
                    tokio::fs::remove_file(&path).await
                };
                if done.is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

impl Service {
    /// Removes old objects that no record names: files and the parts of uploads.
    async fn sweep_stray_objects(&self, objects: &ObjectStore, now: i64) -> Result<usize> {
        let mut removed = 0;
        for prefix in ["files/", "parts/"] {
            for o in objects.list(prefix).await? {
                if now - o.modified_ms <= ORPHAN_MS {
                    continue;
                }
                let Some(id) = o.key[prefix.len()..].split('/').next().map(str::to_owned) else {
                    continue;
                };
                if self
                    .store
                    .read(move |c| files::get(c, &id))
                    .await?
                    .is_some()
                {
                    continue;
                }
                objects.delete(&o.key).await;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The entries of `dir` last modified more than [`ORPHAN_MS`] before `now`, with whether each
/// is a directory; none if `dir` cannot be read.
async fn old_entries(dir: &Path, now: i64) -> Vec<(std::path::PathBuf, bool)> {
    let mut out = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return out;
    };
    while let Ok(Some(e)) = entries.next_entry().await {
        let Ok(meta) = e.metadata().await else {
            continue;
        };
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        if now - modified > ORPHAN_MS {
            out.push((e.path(), meta.is_dir()));
        }
    }
    out
}
