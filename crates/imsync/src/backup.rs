//! `imsync backup DEST`: a consistent copy of a SQLite data directory, taken while the server
//! keeps serving, that a server can be started on as it is (restoring is `serve --data-dir DEST`).

use crate::config::{Backend, Config};
use anyhow::{bail, Context};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::{Duration, Instant};

/// The database file's name in a data directory, as `serve` opens it.
const DATABASE: &str = "imsync.db";
/// Attachments, next to the database.
const FILES: &str = "files";
/// How long the copy waits for a moment when it may read the database.
const BUSY_WAIT: Duration = Duration::from_secs(30);

/// What a finished backup copied, for the one line the command prints.
pub struct Copied {
    pub pages: i32,
    pub files: u64,
}

pub fn run(config: &Config, dest: &Path) -> anyhow::Result<Copied> {
    let source = match config.backend()? {
        Backend::Sqlite(o) => o.sqlite_path,
        Backend::Postgres(_) => bail!(
            "imsync backup copies SQLite databases; back up PostgreSQL with pg_dump \
             (see \"Backup and restore\" in the README)"
        ),
    };
    if !source.is_file() {
        bail!(
            "no database at {}; check --data-dir or --database-url",
            source.display()
        );
    }
    refuse_non_empty(dest)?;
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let pages = copy_database(&source, &dest.join(DATABASE))?;
    let files_dir = config.data_dir.join(FILES);
    let files = match files_dir.is_dir() {
        true => copy_tree(&files_dir, &dest.join(FILES))
            .with_context(|| format!("copying {}", files_dir.display()))?,
        false => 0,
    };
    Ok(Copied { pages, files })
}

/// A backup never mixes with what is already somewhere: an earlier backup, or a data directory.
fn refuse_non_empty(dest: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty; give a new or empty directory",
                    dest.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if dest.exists() && !dest.is_dir() => bail!(
            "{} exists and is not a directory; give a new or empty directory",
            dest.display()
        ),
        Err(e) => Err(e).with_context(|| format!("reading {}", dest.display())),
    }
}

/// Copies the live database with SQLite's online backup. All pages are copied in one step, so
/// under one read transaction: in WAL mode that is a snapshot of one moment, and the server's
/// writes go on meanwhile (copying a few pages at a time would restart on every write of
/// another process and might never finish under load).
fn copy_database(source: &Path, target: &Path) -> anyhow::Result<i32> {
    // Written beside its final name and renamed when complete, so that a failed or interrupted
    // backup never leaves a database that looks whole.
    let partial = target.with_extension("db.partial");
    let result = copy_into(source, &partial).and_then(|pages| {
        std::fs::rename(&partial, target)
            .with_context(|| format!("renaming {} into place", partial.display()))?;
        Ok(pages)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn copy_into(source: &Path, target: &Path) -> anyhow::Result<i32> {
    // Read-write without create: a read-only connection cannot always open the write-ahead
    // log's shared memory, and nothing here writes to the source.
    let from = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", source.display()))?;
    from.busy_timeout(BUSY_WAIT)?;
    let mut to =
        Connection::open(target).with_context(|| format!("creating {}", target.display()))?;
    let pages = {
        let backup = Backup::new(&from, &mut to).context("starting the backup")?;
        let deadline = Instant::now() + BUSY_WAIT;
        loop {
            match backup.step(-1).context("copying the database")? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                StepResult::Busy | StepResult::Locked => {
                    bail!("the database stayed locked for {BUSY_WAIT:?}; try again")
                }
                // A later rusqlite may add results; none of them means the copy is finished.
                other => bail!("copying the database: unexpected step result {other:?}"),
            }
        }
        backup.progress().pagecount
    };
    let check: String = to
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .context("checking the copy")?;
    if check != "ok" {
        bail!("the copy failed SQLite's check: {check}");
    }
    // Folds the copy's write-ahead log into the file, so that DEST holds one self-contained file.
    to.pragma_update(None, "journal_mode", "DELETE")
        .context("finishing the copy")?;
    to.close().map_err(|(_, e)| e).context("closing the copy")?;
    Ok(pages)
}

/// Copies the files that exist under `from` into `to`, subdirectories included; answers how many.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut copied = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copied += copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            match std::fs::copy(entry.path(), &target) {
                Ok(_) => copied += 1,
                // Removed since it was listed: it is not part of the copy.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(copied)
}
