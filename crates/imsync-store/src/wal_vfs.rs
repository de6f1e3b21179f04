//! A thin VFS over SQLite's default one that gathers the writer's WAL appends into one write per
//! commit.
//!
//! SQLite writes every WAL frame with two system calls (its 24-byte header, then the page), and a
//! send dirties about eight pages: the kernel side of those writes was a sixth of the server's
//! CPU under concurrent sends. Here the appends of a transaction collect in memory and reach the
//! file in one write when the transaction's commit frame is written, which is still before SQLite
//! publishes the commit to readers (the WAL index is updated after the frames are written), so
//! readers and a crash see exactly what they saw before.
//!
//! Any other operation on the WAL file (a read, a write elsewhere, a sync, a truncation, its size,
//! closing it) first writes out what is held, so SQLite never observes the buffer. Only files
//! opened as a WAL are wrapped; every other file is the default VFS's own.

use rusqlite::ffi;
use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

/// The name connections ask for to write through this VFS.
pub(crate) const NAME: &CStr = c"imsync-wal";

/// A WAL frame header: page number, database size after a commit (zero otherwise), salts and
/// checksums.
const FRAME_HEADER: usize = 24;
/// The WAL file header; frames start after it.
const WAL_HEADER: i64 = 32;
/// Appends held past this size are written out at once (a transaction of some 2000 pages).
const MAX_HELD: usize = 4 << 20;
/// The most the default VFS writes in one call: it keeps only the low 17 bits of a length.
const MAX_WRITE: usize = 64 * 1024;

/// A wrapped WAL file: SQLite's handle, then what it holds, then the default VFS's file.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    held: *mut Held,
}

/// Appends not yet written: `data` belongs at `start` in the file.
struct Held {
    data: Vec<u8>,
    start: i64,
    /// The last write was a commit frame's header, so the next one completes the commit.
    commit_next: bool,
}

/// Where the default VFS's file sits inside ours, aligned for it.
const INNER_OFFSET: usize = (std::mem::size_of::<WalFile>() + 7) & !7;

/// The default VFS, found when this one is registered.
static DEFAULT_VFS: OnceLock<usize> = OnceLock::new();

/// Registers the VFS once per process.
pub(crate) fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find` initializes SQLite and returns a VFS that lives as long
            // as the process; ours is a copy of it, leaked so that it lives as long too.
            unsafe {
                let default = ffi::sqlite3_vfs_find(ptr::null());
                if default.is_null() {
                    return Err("SQLite has no default VFS".into());
                }
                let mut vfs = *default;
                vfs.zName = NAME.as_ptr();
                vfs.pNext = ptr::null_mut();
                vfs.szOsFile = INNER_OFFSET as c_int + (*default).szOsFile;
                vfs.xOpen = Some(open);
                DEFAULT_VFS.get_or_init(|| default as usize);
                let rc = ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0);
                if rc != ffi::SQLITE_OK {
                    return Err(format!("registering the WAL VFS failed with code {rc}"));
                }
            }
            Ok(())
        })
        .clone()
}

fn default_vfs() -> *mut ffi::sqlite3_vfs {
    *DEFAULT_VFS
        .get()
        .expect("the VFS opens files only once registered") as *mut ffi::sqlite3_vfs
}

/// The default VFS's file inside a wrapped one.
unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    file.cast::<u8>().add(INNER_OFFSET).cast()
}

unsafe fn inner_methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    &*(*inner(file)).pMethods
}

unsafe fn held<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Held {
    &mut *(*file.cast::<WalFile>()).held
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let default = default_vfs();
    let Some(default_open) = (*default).xOpen else {
        return ffi::SQLITE_CANTOPEN;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        return default_open(default, name, file, flags, out_flags);
    }
    let inner_file = inner(file);
    let rc = default_open(default, name, inner_file, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        // SQLite closes a file whose open failed only through the methods it sees: ours are not
        // set yet, so the default VFS's file is closed here if it was left open.
        if let Some(close) = (*inner_file)
            .pMethods
            .as_ref()
            .and_then(|methods| methods.xClose)
        {
            close(inner_file);
        }
        (*file).pMethods = ptr::null();
        return rc;
    }
    let wal = file.cast::<WalFile>();
    (*wal).held = Box::into_raw(Box::new(Held {
        data: Vec::with_capacity(64 * 1024),
        start: 0,
        commit_next: false,
    }));
    (*wal).base.pMethods = &WAL_METHODS;
    ffi::SQLITE_OK
}

/// Writes out what the file holds.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    let held = held(file);
    if held.data.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(write) = inner_methods(file).xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut rc = ffi::SQLITE_OK;
    let mut offset = held.start;
    for chunk in held.data.chunks(MAX_WRITE) {
        rc = write(
            inner(file),
            chunk.as_ptr().cast(),
            chunk.len() as c_int,
            offset,
        );
        if rc != ffi::SQLITE_OK {
            break;
        }
        offset += chunk.len() as i64;
    }
    held.data.clear();
    held.commit_next = false;
    rc
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount.max(0) as usize);
    let held = held(file);
    let follows = offset == held.start + held.data.len() as i64;
    if !held.data.is_empty() && (!follows || held.data.len() + bytes.len() > MAX_HELD) {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if held.data.is_empty() {
        held.start = offset;
    }
    held.data.extend_from_slice(bytes);
    if held.commit_next {
        // The commit frame's page: the transaction is complete and goes to the file now,
        // before SQLite makes it visible in the WAL index.
        return flush(file);
    }
    held.commit_next = bytes.len() == FRAME_HEADER && offset >= WAL_HEADER && bytes[4..8] != [0; 4];
    ffi::SQLITE_OK
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    let flushed = flush(file);
    drop(Box::from_raw((*file.cast::<WalFile>()).held));
    let closed = match inner_methods(file).xClose {
        Some(close) => close(inner(file)),
        None => ffi::SQLITE_OK,
    };
    (*file).pMethods = ptr::null();
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// Forwards a method to the default VFS's file after writing out what is held.
macro_rules! flushed_then {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            match inner_methods(file).$method {
                Some(method) => method(inner(file) $(, $arg)*),
                None => ffi::SQLITE_IOERR,
            }
        }
    };
}

flushed_then!(wal_read, xRead, (data: *mut c_void, amount: c_int, offset: i64));
flushed_then!(wal_truncate, xTruncate, (size: i64));
flushed_then!(wal_sync, xSync, (flags: c_int));
flushed_then!(wal_file_size, xFileSize, (size: *mut i64));
flushed_then!(wal_lock, xLock, (level: c_int));
flushed_then!(wal_unlock, xUnlock, (level: c_int));
flushed_then!(wal_check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
flushed_then!(wal_file_control, xFileControl, (op: c_int, arg: *mut c_void));

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    match inner_methods(file).xSectorSize {
        Some(method) => method(inner(file)),
        None => 4096,
    }
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    match inner_methods(file).xDeviceCharacteristics {
        Some(method) => method(inner(file)),
        None => 0,
    }
}

/// SQLite maps shared memory and pages only through the database file, never through its WAL,
/// so version 1 of the methods is all a WAL file needs.
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};
    use std::path::Path;

    fn writer(path: &Path, cache_pages: i64) -> Connection {
        register().unwrap();
        let c = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME).unwrap();
        c.execute_batch(&format!(
            "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = {cache_pages}; \
             CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);"
        ))
        .unwrap();
        c
    }

    fn rows(c: &Connection) -> (i64, i64) {
        c.query_row(
            "SELECT count(*), coalesce(sum(length(v)), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    fn integrity(c: &Connection) -> String {
        c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    }

    /// A copy of the database and its WAL as a crash would leave them: SQLite must rebuild the
    /// WAL index from the file alone, which checks every frame's checksum.
    fn crash_copy(from: &Path, to: &Path) -> Connection {
        std::fs::copy(from, to).unwrap();
        let wal = |p: &Path| p.with_extension("db-wal");
        std::fs::copy(wal(from), wal(to)).unwrap();
        Connection::open(to).unwrap()
    }

    #[test]
    fn each_commit_is_visible_to_other_connections_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let w = writer(&path, -2000);
        let r = Connection::open(&path).unwrap();
        for i in 0..200 {
            w.execute_batch("BEGIN IMMEDIATE").unwrap();
            w.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", (i, "x".repeat(900)))
                .unwrap();
            w.execute_batch("COMMIT").unwrap();
            assert_eq!(rows(&r), (i + 1, (i + 1) * 900));
        }
        let copy = crash_copy(&path, &dir.path().join("copy.db"));
        assert_eq!(rows(&copy), (200, 200 * 900));
        assert_eq!(integrity(&copy), "ok");
    }

    #[test]
    fn big_transactions_and_rewritten_pages_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        // A cache of 20 pages makes SQLite spill pages to the WAL before the commit, then write
        // some of them again in place and rewrite the checksums that follow.
        let w = writer(&path, 20);
        for round in 0..3i64 {
            w.execute_batch("BEGIN IMMEDIATE").unwrap();
            for k in 0..3000i64 {
                w.execute(
                    "INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)",
                    (k, format!("{round}-{}", "y".repeat((k % 700) as usize))),
                )
                .unwrap();
            }
            w.execute("UPDATE t SET v = v || 'z' WHERE k % 7 = 0", [])
                .unwrap();
            w.execute_batch("COMMIT").unwrap();
        }
        // A transaction that rolls back leaves nothing behind.
        w.execute_batch("BEGIN IMMEDIATE").unwrap();
        w.execute("DELETE FROM t", []).unwrap();
        w.execute_batch("ROLLBACK").unwrap();
        let expected = rows(&w);
        assert_eq!(expected.0, 3000);
        let r = Connection::open(&path).unwrap();
        assert_eq!(rows(&r), expected);
        let copy = crash_copy(&path, &dir.path().join("copy.db"));
        assert_eq!(rows(&copy), expected);
        assert_eq!(integrity(&copy), "ok");
    }
}
