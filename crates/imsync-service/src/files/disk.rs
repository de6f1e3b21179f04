//! The local file store: one file per upload under its root, named by the upload's id.
//!
//! Bytes arrive as a stream and go to a temporary file under `tmp/` chunk by chunk, never whole
//! in memory; only a complete upload within its limit is renamed into place, so a reader never
//! sees a partial file and a failed upload leaves at most a temporary file (removed on the
//! spot, or by the collector if the process died). Multipart uploads keep each part under
//! `parts/<id>/<n>` until they are joined.

use super::ByteStream;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use imsync_core::{Error, ErrorCode, Result};
use md5::{Digest, Md5};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

/// What a stored stream was.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub size: u64,
    /// Hex MD5 of the bytes (a part's ETag, as S3 gives it).
    pub md5: String,
    /// The first bytes, for sniffing.
    pub head: Vec<u8>,
}

/// How many leading bytes [`Written::head`] keeps.
const HEAD_LEN: usize = 16;

#[derive(Debug)]
pub(crate) struct Disk {
    root: PathBuf,
}

/// Ids come from the store, but a path is only ever built from a plain one.
pub(crate) fn check_id(id: &str) -> Result<&str> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(Error::not_found("File"))
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::internal(format!("{what} {}: {e}", path.display()))
}

impl Disk {
    pub fn new(root: PathBuf) -> Disk {
        Disk { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn parts_root(&self) -> PathBuf {
        self.root.join("parts")
    }

    pub fn path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.root.join(check_id(id)?))
    }

    fn parts_dir(&self, id: &str) -> Result<PathBuf> {
        Ok(self.parts_root().join(check_id(id)?))
    }

    /// Where part `n` of `id` is kept, named by its MD5 as well: joining the parts then finds
    /// each by the ETag its upload answered, without hashing it again. A part sent again under
    /// other bytes lies beside the first; both go with the upload's parts.
    pub fn part_path(&self, id: &str, n: u32, md5: &str) -> Result<PathBuf> {
        if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::param(format!(
                "part {n}'s etag is not the one its upload answered"
            )));
        }
        Ok(self
            .parts_dir(id)?
            .join(format!("{n}.{}", md5.to_ascii_lowercase())))
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    async fn temp_file(&self) -> Result<(PathBuf, tokio::fs::File)> {
        let dir = self.tmp_dir();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error("creating", &dir, e))?;
        let path = dir.join(imsync_core::ids::new_id());
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| io_error("creating", &path, e))?;
        Ok((path, file))
    }

    /// Streams `body` into `dest` (replacing it), refusing it once it passes `limit` bytes; with
    /// `md5`, answers the MD5 of its bytes (a part's ETag), which a whole file does not need.
    /// A body that fails or is refused leaves `dest` as it was.
    pub async fn store<S>(&self, dest: &Path, body: S, limit: u64, md5: bool) -> Result<Written>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let (tmp, file) = self.temp_file().await?;
        let written = copy_into(file, &tmp, body, limit, md5).await;
        self.finish(tmp, dest, written).await
    }

    /// Streams part `n` of `id` into its place (see [`Disk::part_path`]), refusing it once it
    /// passes `limit` bytes; answers its MD5, its ETag.
    pub async fn store_part<S>(&self, id: &str, n: u32, body: S, limit: u64) -> Result<Written>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let parts = self.parts_dir(id)?;
        let (tmp, file) = self.temp_file().await?;
        let written = copy_into(file, &tmp, body, limit, true).await;
        let dest = match &written {
            Ok(w) => self.part_path(id, n, &w.md5)?,
            Err(_) => parts,
        };
        self.finish(tmp, &dest, written).await
    }

    /// Joins the parts `1..=count` of `id` into its file, each the one uploaded with its ETag in
    /// `etags`; answers the joined file's size and head. The parts are removed afterwards.
    pub async fn join_parts(&self, id: &str, etags: &[String]) -> Result<Written> {
        let (tmp, mut out) = self.temp_file().await?;
        let joined = async {
            let mut size = 0u64;
            let mut head = Vec::with_capacity(HEAD_LEN);
            let mut buf = vec![0u8; 256 * 1024];
            for (i, etag) in etags.iter().enumerate() {
                let path = self.part_path(id, i as u32 + 1, etag.trim_matches('"'))?;
                let mut part = tokio::fs::File::open(&path).await.map_err(|_| {
                    Error::param(format!(
                        "part {} was not uploaded with the etag given",
                        i + 1
                    ))
                })?;
                loop {
                    let n = part
                        .read(&mut buf)
                        .await
                        .map_err(|e| io_error("reading", &path, e))?;
                    if n == 0 {
                        break;
                    }
                    keep_head(&mut head, &buf[..n]);
                    out.write_all(&buf[..n])
                        .await
                        .map_err(|e| io_error("writing", &tmp, e))?;
                    size += n as u64;
                }
            }
            out.sync_all()
                .await
                .map_err(|e| io_error("syncing", &tmp, e))?;
            Ok(Written {
                size,
                md5: String::new(),
                head,
            })
        }
        .await;
        let written = self.finish(tmp, &self.path(id)?, joined).await?;
        self.remove_parts(id).await;
        Ok(written)
    }

    async fn finish(&self, tmp: PathBuf, dest: &Path, written: Result<Written>) -> Result<Written> {
        let renamed = match written {
            Ok(w) => {
                if let Some(dir) = dest.parent() {
                    tokio::fs::create_dir_all(dir)
                        .await
                        .map_err(|e| io_error("creating", dir, e))?;
                }
                tokio::fs::rename(&tmp, dest)
                    .await
                    .map(|_| w)
                    .map_err(|e| io_error("renaming into", dest, e))
            }
            Err(e) => Err(e),
        };
        if renamed.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        renamed
    }

    /// The bytes of file `id`, all or the inclusive `range`; a missing file is not found.
    pub async fn read(&self, id: &str, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let path = self.path(id)?;
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found("File")
            } else {
                io_error("opening", &path, e)
            }
        })?;
        let (start, count) = match range {
            Some((a, b)) => (a, b - a + 1),
            None => (0, u64::MAX),
        };
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| io_error("seeking", &path, e))?;
        }
        let stream = ReaderStream::with_capacity(file.take(count), 64 * 1024);
        Ok(Box::pin(
            stream.map_err(move |e| io_error("reading", &path, e)),
        ))
    }

    /// Removes a file and whatever parts it had; a missing one is no error.
    pub async fn remove(&self, id: &str) {
        if let Ok(path) = self.path(id) {
            if let Err(e) = tokio::fs::remove_file(&path).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a file");
                }
            }
        }
        self.remove_parts(id).await;
    }

    async fn remove_parts(&self, id: &str) {
        if let Ok(dir) = self.parts_dir(id) {
            let _ = tokio::fs::remove_dir_all(&dir).await;
        }
    }
}

/// How much of an upload is gathered before each write: each write of a `tokio::fs::File` is a
/// trip to a blocking thread, and a request body arrives in chunks of a few KiB.
const WRITE_BLOCK: usize = 256 * 1024;

async fn copy_into<S>(
    file: tokio::fs::File,
    path: &Path,
    body: S,
    limit: u64,
    md5: bool,
) -> Result<Written>
where
    S: Stream<Item = Result<Bytes>> + Send,
{
    let mut body = std::pin::pin!(body);
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BLOCK, file);
    let mut size = 0u64;
    let mut hasher = md5.then(Md5::new);
    let mut head = Vec::with_capacity(HEAD_LEN);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("The upload is larger than the {limit} bytes allowed"),
            ));
        }
        if let Some(h) = &mut hasher {
            h.update(&chunk);
        }
        keep_head(&mut head, &chunk);
        out.write_all(&chunk)
            .await
            .map_err(|e| io_error("writing", path, e))?;
    }
    out.flush()
        .await
        .map_err(|e| io_error("writing", path, e))?;
    out.into_inner()
        .sync_all()
        .await
        .map_err(|e| io_error("syncing", path, e))?;
    Ok(Written {
        size,
        md5: hasher.map(|h| hex(&h.finalize())).unwrap_or_default(),
        head,
    })
}

pub(crate) fn keep_head(head: &mut Vec<u8>, chunk: &[u8]) {
    let room = HEAD_LEN.saturating_sub(head.len());
    head.extend_from_slice(&chunk[..room.min(chunk.len())]);
}

fn hex(bytes: &[u8]) -> String {
    imsync_core::ids::hex(bytes)
}

/// The image type the leading bytes show, among those served inline.
pub fn sniff_image(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes>> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn a_stream_over_its_limit_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path().to_path_buf());
        let dest = disk.path("abc").unwrap();
        let w = disk
            .store(&dest, chunks(&[b"hello ", b"world"]), 11, true)
            .await
            .unwrap();
        assert_eq!((w.size, w.head.as_slice()), (11, &b"hello world"[..]));
        assert_eq!(w.md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        let e = disk
            .store(&dest, chunks(&[b"hello ", b"world!"]), 11, false)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        assert_eq!(std::fs::read_dir(disk.tmp_dir()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn parts_are_joined_by_the_etags_their_uploads_answered() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path().to_path_buf());
        let one = disk
            .store_part("up", 1, chunks(&[b"hello "]), 6)
            .await
            .unwrap();
        let first_two = disk
            .store_part("up", 2, chunks(&[b"there"]), 6)
            .await
            .unwrap();
        // Part 2 sent again under other bytes: the ETag given at the join picks which.
        let two = disk
            .store_part("up", 2, chunks(&[b"world"]), 6)
            .await
            .unwrap();
        for bad in ["0123456789abcdef0123456789abcdef", "../../files/x", ""] {
            let e = disk
                .join_parts("up", &[one.md5.clone(), bad.to_owned()])
                .await
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParam, "{bad}");
        }
        let w = disk
            .join_parts("up", &[format!("\"{}\"", one.md5), two.md5.clone()])
            .await
            .unwrap();
        assert_ne!(first_two.md5, two.md5);
        assert_eq!(w.size, 11);
        assert_eq!(
            std::fs::read(disk.path("up").unwrap()).unwrap(),
            b"hello world"
        );
        assert!(!disk.parts_dir("up").unwrap().exists());
    }

    #[test]
    fn paths_are_built_from_plain_ids_only() {
        let disk = Disk::new(PathBuf::from("/x"));
        for bad in ["", "../a", "a/b", ".", "a.b"] {
            assert!(disk.path(bad).is_err(), "{bad}");
        }
        assert_eq!(disk.path("Ab09").unwrap(), PathBuf::from("/x/Ab09"));
    }

    #[test]
    fn images_are_sniffed() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"<html><script>"), None);
    }
}
