//! Files: uploads (whole, or in parts for large ones), confirmation, and downloads, for every face.
//!
//! An upload is announced first (its name, size and type), which makes a pending record; its
//! bytes then stream into the file store (a directory, [`disk`], or an S3-compatible bucket,
//! [`s3`]) and the owner confirms it. A confirmed
//! file becomes part of a conversation when a message carries its id in `metadata.uploadId`:
//! the send links the two in its own transaction. Who may download a file follows the one
//! visibility rule: its uploader always; anyone else only while one of the messages carrying it
//! is visible to them and not deleted, so a member removed before the message was sent is
//! refused, and one who saw it before their removal keeps it, as they keep the message.

mod disk;
mod s3;
mod sweep;

pub use sweep::{Swept, GRACE_MS, ORPHAN_MS};

use crate::visibility::Sight;
use crate::Service;
use bytes::Bytes;
use futures_util::Stream;
use imsync_core::model::{Message, User};
use imsync_core::{ids, time::now_ms, Error, ErrorCode, Result};
use imsync_store::repo::files::{self, FileLink};
pub use imsync_store::repo::files::{FileRecord, FileState};
use imsync_store::repo::messages;
use imsync_store::{FirstRead, SqlConn};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

pub use disk::sniff_image;
pub use s3::S3Config;

/// The size of every part of a multipart upload but the last (what the Prismer SDK cuts).
pub const PART_BYTES: u64 = 5 * 1024 * 1024;

/// The most parts one upload may have.
const MAX_PARTS: u64 = 10_000;

/// Longest file name.
const MAX_NAME_LEN: usize = 255;

/// Types served inline (when the content is sniffed to be that type too); everything else is
/// served as an attachment.
pub const INLINE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// A file's bytes as they are read.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Where the bytes are kept: see [`disk`] and [`s3`].
#[derive(Debug)]
enum Backend {
    Disk(disk::Disk),
    S3(s3::ObjectStore),
}

impl Backend {
    async fn store_file<S>(&self, id: &str, body: S, limit: u64) -> Result<disk::Written>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        match self {
            Backend::Disk(d) => d.store(&d.path(id)?, body, limit, false).await,
            Backend::S3(o) => o.store(&s3::file_key(id)?, body, limit).await,
        }
    }

    async fn store_part<S>(&self, id: &str, n: u32, body: S, limit: u64) -> Result<disk::Written>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        match self {
            Backend::Disk(d) => d.store_part(id, n, body, limit).await,
            Backend::S3(o) => o.store(&s3::part_key(id, n)?, body, limit).await,
        }
    }

    async fn join_parts(&self, id: &str, etags: &[String]) -> Result<disk::Written> {
        match self {
            Backend::Disk(d) => d.join_parts(id, etags).await,
            Backend::S3(o) => o.join_parts(id, etags).await,
        }
    }

    async fn read(&self, id: &str, range: Option<(u64, u64)>) -> Result<ByteStream> {
        match self {
            Backend::Disk(d) => d.read(id, range).await,
            Backend::S3(o) => o.read(&s3::file_key(id)?, range).await,
        }
    }

    async fn remove(&self, id: &str) {
        match self {
            Backend::Disk(d) => d.remove(id).await,
            Backend::S3(o) => o.remove(id).await,
        }
    }
}

/// The file store as the service holds it.
#[derive(Debug, Clone)]
pub(crate) struct FileStore {
    backend: Option<Arc<Backend>>,
    max_bytes: u64,
}

impl FileStore {
    /// The object store when one is configured, else the directory, else none. An object
    /// store whose settings cannot be used leaves the service without files (and says so):
    /// the binary checks them with [`S3Config::check`] before it gets here.
    pub fn new(dir: Option<PathBuf>, s3: Option<&S3Config>, max_bytes: u64) -> FileStore {
        let backend = match (s3, dir) {
            (Some(c), _) => match s3::ObjectStore::new(c) {
                Ok(o) => Some(Backend::S3(o)),
                Err(e) => {
                    tracing::error!(error = %e, "the object store settings are unusable");
                    None
                }
            },
            (None, Some(d)) => Some(Backend::Disk(disk::Disk::new(d))),
            (None, None) => None,
        };
        FileStore {
            backend: backend.map(Arc::new),
            max_bytes,
        }
    }

    fn backend(&self) -> Result<&Arc<Backend>> {
        self.backend.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::Unavailable,
                "File storage is not configured on this server",
            )
        })
    }
}

impl S3Config {
    /// Whether these settings make an object store (the endpoint is a URL, the bucket a name);
    /// nothing is sent.
    pub fn check(&self) -> Result<()> {
        s3::ObjectStore::new(self).map(drop)
    }
}

/// A file ready to be read by its caller.
#[derive(Debug, Clone)]
pub struct FileDownload {
    pub file: FileRecord,
    backend: Arc<Backend>,
}

impl FileDownload {
    /// The file's bytes, all or the inclusive `range`.
    pub async fn read(&self, range: Option<(u64, u64)>) -> Result<ByteStream> {
        self.backend.read(&self.file.id, range).await
    }
}

/// A multipart upload as announced: its record and the number of parts expected.
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    pub file: FileRecord,
    pub parts: u32,
}

/// A user's storage use.
#[derive(Debug, Clone, Copy)]
pub struct FileUsage {
    pub used: i64,
    pub count: i64,
}

/// An announced upload, as a face receives it.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub name: String,
    pub size: i64,
    pub mime: String,
}

fn valid_mime(m: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    m.len() <= 127
        && match m.split_once('/') {
            Some((t, s)) => token(t) && token(s),
            None => false,
        }
}

impl NewFile {
    fn check(self, max_bytes: u64) -> Result<NewFile> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            return Err(Error::param(format!(
                "fileName must have 1 to {MAX_NAME_LEN} characters"
            )));
        }
        if name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        {
            return Err(Error::param(
                "fileName may not contain control characters or slashes",
            ));
        }
        if self.size < 0 {
            return Err(Error::param("fileSize must be a positive number of bytes"));
        }
        if self.size as u64 > max_bytes {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("Files may have at most {max_bytes} bytes"),
            ));
        }
        let mime = match self.mime.trim() {
            "" => "application/octet-stream".to_owned(),
            m => m.to_ascii_lowercase(),
        };
        if !valid_mime(&mime) {
            return Err(Error::param("mimeType must look like type/subtype"));
        }
        Ok(NewFile {
            name,
            size: self.size,
            mime,
        })
    }
}

/// The caller's own file, or 404 for anyone else's: an upload in progress is nobody else's
/// business.
fn owned(c: &mut dyn SqlConn, me: &str, id: &str) -> Result<FileRecord> {
    files::get(c, id)?
        .filter(|f| f.owner_id == me)
        .ok_or_else(|| Error::not_found("File"))
}

/// Whether `me` may read a confirmed file: see the module's comment.
fn may_read(c: &mut dyn SqlConn, me: &str, f: &FileRecord) -> Result<()> {
    if f.owner_id == me {
        return Ok(());
    }
    let links = files::links(c, &f.id)?;
    if links.is_empty() {
        return Err(Error::not_found("File"));
    }
    for link in links {
        let sight = Sight::of(c, me, &link.conv_id)?;
        if !sight.sees(link.event_seq) {
            continue;
        }
        let Some(m) = messages::get(c, &link.message_id)? else {
            continue;
        };
        if sight
            .view(c, vec![m])?
            .iter()
            .any(|s| s.message.deleted_at.is_none())
        {
            return Ok(());
        }
    }
    Err(Error::forbidden(
        "You may not read the conversation this file was sent in",
    ))
}

/// Where a file is downloaded from: the one URL every face's messages carry (relative to the
/// server; the Rocket.Chat and TangSengDaoDao faces also serve it under their own paths).
pub fn content_url(id: &str) -> String {
    format!("/api/im/files/{id}/content")
}

/// The upload id in a URL a face handed out for a file (the native content URL, or the
/// TangSengDaoDao preview path), absolute or relative.
pub fn upload_id_in_url(url: &str) -> Option<&str> {
    let plain = |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
    if let Some((_, rest)) = url.split_once("/api/im/files/") {
        return rest.strip_suffix("/content").filter(|id| plain(id));
    }
    let rest = url.split_once("file/preview/")?.1;
    let id = rest.split('/').next()?;
    plain(id).then_some(id)
}

/// The native type of a message carrying `f`: an image when it is one that is shown inline.
pub fn message_kind(f: &FileRecord) -> &'static str {
    if f.inline_ok {
        "image"
    } else {
        "file"
    }
}

/// The metadata of a message carrying `f`, as the Prismer SDK's `send_file` writes it.
pub fn message_metadata(f: &FileRecord) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("uploadId".into(), f.id.clone().into());
    m.insert("fileUrl".into(), content_url(&f.id).into());
    m.insert("fileName".into(), f.name.clone().into());
    m.insert("fileSize".into(), f.size.into());
    m.insert("mimeType".into(), f.mime.clone().into());
    m
}

/// The upload a message's metadata names (`uploadId`, as the Prismer SDK sends it).
pub(crate) fn upload_id_of(m: &Message) -> Option<&str> {
    m.metadata.get("uploadId").and_then(|v| v.as_str())
}

/// What a send of `m` reads first for its file, named ahead (see [`attachable`]).
pub(crate) fn attach_read(me: &User, m: &Message) -> Option<FirstRead> {
    upload_id_of(m).map(|id| files::own_ready_read(&m.conversation_id, id, &me.id))
}

/// The file `m` carries, checked inside the send before it writes anything: the sender must be
/// able to read it (their own, or one they were sent), and it must be confirmed.
pub(crate) fn attachable(c: &mut dyn SqlConn, me: &User, m: &Message) -> Result<Option<String>> {
    let Some(id) = upload_id_of(m) else {
        return Ok(None);
    };
    // Nearly every file message carries its sender's own confirmed upload, which one read of a
    // primary key settles (fetched with the batch's first reads where that saves a round trip).
    if files::own_ready(c, id, &me.id)? {
        return Ok(Some(id.to_owned()));
    }
    let refused = || Error::param("metadata.uploadId does not name a confirmed file you may send");
    let f = files::get(c, id)?.ok_or_else(refused)?;
    if f.state != FileState::Ready || may_read(c, &me.id, &f).is_err() {
        return Err(refused());
    }
    Ok(Some(f.id))
}

/// Links the file [`attachable`] checked to its message, once the message has its event.
pub(crate) fn attach_in(c: &mut dyn SqlConn, file_id: String, m: &Message) -> Result<()> {
    files::link_later(
        c,
        &FileLink {
            file_id,
            message_id: m.id.clone(),
            conv_id: m.conversation_id.clone(),
            event_seq: m.event_seq,
        },
    )
}

impl Service {
    /// Checks that the file store answers (the object store's bucket, with its credentials),
    /// so that a wrong setting fails the start rather than the first upload.
    pub async fn check_file_store(&self) -> Result<()> {
        match self.files.backend.as_deref() {
            Some(Backend::S3(o)) => o.check().await,
            _ => Ok(()),
        }
    }

    /// The largest file accepted, in bytes.
    pub fn max_file_bytes(&self) -> u64 {
        self.files.max_bytes
    }

    /// Announces an upload of one piece (`multipart` false) or of [`PART_BYTES`] parts.
    pub async fn announce_file(
        &self,
        me: &User,
        new: NewFile,
        multipart: bool,
    ) -> Result<MultipartUpload> {
        self.files.backend()?;
        let new = new.check(self.files.max_bytes)?;
        let parts = (new.size as u64).div_ceil(PART_BYTES).max(1);
        if multipart && parts > MAX_PARTS {
            return Err(Error::param("too many parts"));
        }
        let now = now_ms();
        let file = FileRecord {
            id: ids::new_id(),
            owner_id: me.id.clone(),
            name: new.name,
            mime: new.mime,
            declared_size: new.size,
            size: 0,
            inline_ok: false,
            multipart,
            state: FileState::Pending,
            created_at: now,
            updated_at: now,
        };
        let f = file.clone();
        self.store.write(move |c| files::insert(c, &f)).await?;
        Ok(MultipartUpload {
            file,
            parts: if multipart { parts as u32 } else { 1 },
        })
    }

    /// Stores the bytes of a one-piece upload (again, if they were sent before and not yet
    /// confirmed). At most the announced size is accepted.
    pub async fn upload_file<S>(&self, me: &User, id: &str, body: S) -> Result<FileRecord>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let backend = self.files.backend()?;
        let f = self.own_file(me, id).await?;
        if f.multipart {
            return Err(Error::param("This upload is sent in parts"));
        }
        if f.state == FileState::Ready {
            return Err(Error::conflict("This upload is confirmed already"));
        }
        let limit = (f.declared_size as u64).min(self.files.max_bytes);
        let written = backend.store_file(&f.id, body, limit).await?;
        self.record_upload(f, written.size, &written.head, false)
            .await
    }

    /// Stores part `n` (from 1) of a multipart upload; answers its ETag.
    pub async fn upload_part<S>(&self, me: &User, id: &str, n: u32, body: S) -> Result<String>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let backend = self.files.backend()?;
        let f = self.own_file(me, id).await?;
        if !f.multipart || f.state != FileState::Pending {
            return Err(Error::conflict("This upload takes no parts"));
        }
        let size = f.declared_size as u64;
        let parts = size.div_ceil(PART_BYTES).max(1);
        if n == 0 || n as u64 > parts {
            return Err(Error::param(format!("partNumber must be 1 to {parts}")));
        }
        let expected = PART_BYTES.min(size - (n as u64 - 1) * PART_BYTES);
        let written = backend.store_part(&f.id, n, body, expected).await?;
        if written.size != expected {
            return Err(Error::param(format!(
                "part {n} must have {expected} bytes, not {}",
                written.size
            )));
        }
        Ok(format!("\"{}\"", written.md5))
    }

    /// Joins a multipart upload's parts (given in order with their ETags) and confirms it.
    pub async fn complete_multipart(
        &self,
        me: &User,
        id: &str,
        etags: Vec<(u32, String)>,
    ) -> Result<FileRecord> {
        let backend = self.files.backend()?;
        let f = self.own_file(me, id).await?;
        if f.state == FileState::Ready && f.multipart {
            // A retried completion answers what the first one made.
            return Ok(f);
        }
        if !f.multipart || f.state != FileState::Pending {
            return Err(Error::conflict("This upload is not sent in parts"));
        }
        let parts = (f.declared_size as u64).div_ceil(PART_BYTES).max(1);
        if etags.len() as u64 != parts || etags.iter().enumerate().any(|(i, p)| p.0 != i as u32 + 1)
        {
            return Err(Error::param(format!(
                "parts must list partNumber 1 to {parts} in order"
            )));
        }
        let etags: Vec<String> = etags.into_iter().map(|(_, e)| e).collect();
        let written = backend.join_parts(&f.id, &etags).await?;
        if written.size != f.declared_size as u64 {
            return Err(Error::param(
                "the parts do not add up to the announced size",
            ));
        }
        self.record_upload(f, written.size, &written.head, true)
            .await
    }

    /// Stores and confirms a file whose size is not announced (an upload and its message in one
    /// request, as Rocket.Chat and TangSengDaoDao send them).
    pub async fn store_file<S>(
        &self,
        me: &User,
        name: &str,
        mime: &str,
        body: S,
    ) -> Result<FileRecord>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let new = NewFile {
            name: if name.trim().is_empty() { "file" } else { name }.to_owned(),
            size: self.files.max_bytes as i64,
            mime: mime.to_owned(),
        };
        let f = self.announce_file(me, new, false).await?.file;
        let stored = self.upload_file(me, &f.id, body).await;
        if stored.is_err() {
            // Nothing refers to the record yet: it goes with the failed upload.
            let _ = self.delete_file(me, &f.id).await;
        }
        stored?;
        self.confirm_file(me, &f.id).await
    }

    /// Confirms an uploaded file; confirming it again answers the same.
    pub async fn confirm_file(&self, me: &User, id: &str) -> Result<FileRecord> {
        let (me, id) = (me.id.clone(), id.to_owned());
        self.store
            .write(move |c| {
                let mut f = owned(c, &me, &id)?;
                match f.state {
                    FileState::Ready => {}
                    FileState::Pending => {
                        return Err(Error::param("Nothing was uploaded for this upload yet"))
                    }
                    FileState::Uploaded => {
                        f.updated_at = now_ms();
                        f.state = FileState::Ready;
                        files::set_state(c, &f.id, FileState::Ready, f.updated_at)?;
                    }
                }
                Ok(f)
            })
            .await
    }

    /// Deletes one's own file: its record, its links and its bytes. Messages that carried it
    /// stay; their downloads answer 404 from then on.
    pub async fn delete_file(&self, me: &User, id: &str) -> Result<()> {
        let backend = self.files.backend()?;
        let (me, id2) = (me.id.clone(), id.to_owned());
        self.store
            .write(move |c| {
                owned(c, &me, &id2)?;
                files::delete(c, &id2)
            })
            .await?;
        backend.remove(id).await;
        Ok(())
    }

    pub async fn file_usage(&self, me: &User) -> Result<FileUsage> {
        let me = me.id.clone();
        let (used, count) = self.store.read(move |c| files::usage(c, &me)).await?;
        Ok(FileUsage { used, count })
    }

    /// A confirmed file the caller may read, with where its bytes are.
    pub async fn open_file(&self, me: &User, id: &str) -> Result<FileDownload> {
        let backend = self.files.backend()?.clone();
        let (me, id) = (me.id.clone(), id.to_owned());
        let file = self
            .store
            .read(move |c| {
                let f = files::get(c, &id)?
                    .filter(|f| f.state == FileState::Ready)
                    .ok_or_else(|| Error::not_found("File"))?;
                may_read(c, &me, &f)?;
                Ok(f)
            })
            .await?;
        Ok(FileDownload { file, backend })
    }

    async fn own_file(&self, me: &User, id: &str) -> Result<FileRecord> {
        let (me, id) = (me.id.clone(), id.to_owned());
        self.store.read(move |c| owned(c, &me, &id)).await
    }

    async fn record_upload(
        &self,
        mut f: FileRecord,
        size: u64,
        head: &[u8],
        confirm: bool,
    ) -> Result<FileRecord> {
        f.size = size as i64;
        f.inline_ok = sniff_image(head) == Some(f.mime.as_str());
        f.updated_at = now_ms();
        f.state = if confirm {
            FileState::Ready
        } else {
            FileState::Uploaded
        };
        let g = f.clone();
        let recorded = self
            .store
            .write(move |c| {
                owned(c, &g.owner_id, &g.id)?;
                files::set_uploaded(c, &g.id, g.size, g.inline_ok, g.updated_at)?;
                if confirm {
                    files::set_state(c, &g.id, FileState::Ready, g.updated_at)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = recorded {
            if e.code == ErrorCode::NotFound {
                // The record went meanwhile (deleted, or collected): so do the bytes.
                self.files.backend()?.remove(&f.id).await;
            }
            return Err(e);
        }
        metrics::counter!("imsync_files_stored_total").increment(1);
        metrics::counter!("imsync_file_bytes_stored_total").increment(size);
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_found_in_the_urls_handed_out() {
        assert_eq!(upload_id_in_url("/api/im/files/Ab1/content"), Some("Ab1"));
        assert_eq!(
            upload_id_in_url("http://h:1/api/im/files/Ab1/content"),
            Some("Ab1")
        );
        assert_eq!(upload_id_in_url("file/preview/Ab1"), Some("Ab1"));
        assert_eq!(
            upload_id_in_url("http://h/v1/file/preview/Ab1/x.png"),
            Some("Ab1")
        );
        assert_eq!(upload_id_in_url("/api/im/files/../x/content"), None);
        assert_eq!(upload_id_in_url("https://elsewhere/x.png"), None);
    }
}
