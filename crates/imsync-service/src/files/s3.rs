//! The object store: uploads kept in an S3-compatible bucket, so that several nodes serve the
//! same files without a shared directory.
//!
//! Every request is a presigned URL (query-string SigV4 with an unsigned payload) sent with the
//! HTTP client, so bodies stream both ways. An upload is read into a buffer of at most
//! [`PART`] bytes: one that ends within it is a single `PUT`; a longer one becomes an S3
//! multipart upload, one part per full buffer, completed at the end and aborted on any error.
//! Memory per upload is therefore one part, whatever the file's size, and an object appears
//! only once complete. The parts of a native multipart upload are kept as objects
//! `parts/<id>/<n>` until they are joined (streamed back through the same uploader); files are
//! `files/<id>`. Unfinished S3 multipart uploads of a process that died are left to the
//! bucket's lifecycle rule (documented), as S3 itself advises.

use super::disk::{check_id, keep_head, Written};
use super::ByteStream;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use imsync_core::{Error, ErrorCode, Result};
use md5::{Digest, Md5};
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CompleteMultipartUploadResponse,
    CreateMultipartUpload, DeleteObject, GetObject, ListObjectsV2, PutObject, UploadPart,
};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::fmt;
use std::time::Duration;

/// Bytes buffered before a part goes up (S3 wants at least 5 MiB for every part but the last).
pub(crate) const PART: usize = 8 * 1024 * 1024;

/// How long a signed URL is valid: one request's worth, with room for a slow body.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// Where the object store is and who imsync is there.
#[derive(Clone)]
pub struct S3Config {
    /// `http(s)://host:port`, with a path prefix if the store has one.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Path-style URLs (`endpoint/bucket/key`, what self-hosted stores expect) rather than
    /// virtual-host ones (`bucket.endpoint/key`).
    pub path_style: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .finish()
    }
}

pub(crate) struct ObjectStore {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStore")
            .field("bucket", &self.bucket.name())
            .finish()
    }
}

fn unavailable(what: &str, e: impl fmt::Display) -> Error {
    // The detail (never a signed URL: reqwest's errors are stripped of it) goes to the log only.
    tracing::warn!(error = %e, "object store: {what} failed");
    Error::new(ErrorCode::Unavailable, "The file store is unavailable")
}

/// A listed object: its key and when it was last written (epoch ms).
pub(crate) struct Listed {
    pub key: String,
    pub modified_ms: i64,
}

pub(crate) fn file_key(id: &str) -> Result<String> {
    Ok(format!("files/{}", check_id(id)?))
}

pub(crate) fn part_key(id: &str, n: u32) -> Result<String> {
    Ok(format!("parts/{}/{n}", check_id(id)?))
}

impl ObjectStore {
    pub fn new(config: &S3Config) -> Result<ObjectStore> {
        let endpoint: url::Url = config
            .endpoint
            .parse()
            .map_err(|e| Error::param(format!("the object store endpoint is not a URL: {e}")))?;
        // The HTTP client is built without TLS (no second crypto stack in every build): an
        // object store is reached on the nodes' own network, or through a local TLS proxy.
        if endpoint.scheme() != "http" {
            return Err(Error::param(
                "the object store endpoint must be an http:// URL (TLS is not built in)",
            ));
        }
        let style = match config.path_style {
            true => UrlStyle::Path,
            false => UrlStyle::VirtualHost,
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| Error::param(format!("the object store bucket: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::internal(format!("building the HTTP client: {e}")))?;
        Ok(ObjectStore {
            bucket,
            credentials: Credentials::new(config.access_key.clone(), config.secret_key.clone()),
            http,
        })
    }

    fn creds(&self) -> Option<&Credentials> {
        Some(&self.credentials)
    }

    /// Sends a signed request; a non-2xx answer is an error (its body goes to the log).
    async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .map_err(|e| unavailable(what, e.without_url()))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Err(unavailable(what, format!("{status}: {body:.300}")))
    }

    /// Checks that the bucket answers with these credentials (at start, so that a wrong
    /// setting fails the start rather than the first upload).
    pub async fn check(&self) -> Result<()> {
        let mut list = ListObjectsV2::new(&self.bucket, self.creds());
        list.with_max_keys(1);
        self.send("listing the bucket", self.http.get(list.sign(SIGNED_FOR)))
            .await
            .map(drop)
    }

    /// Streams `body` into the object `key`, refusing it once it passes `limit` bytes; a body
    /// that fails or is refused leaves the object as it was.
    pub async fn store<S>(&self, key: &str, body: S, limit: u64) -> Result<Written>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let mut up = Uploader::new(self, key);
        let mut body = std::pin::pin!(body);
        let fed = async {
            while let Some(chunk) = body.next().await {
                up.push(chunk?, limit).await?;
            }
            Ok(())
        }
        .await;
        up.finish(fed).await
    }

    /// Joins the parts `1..=count` of `id` into its file, checking each part's MD5 against
    /// `etags`. The parts are removed afterwards.
    pub async fn join_parts(&self, id: &str, etags: &[String]) -> Result<Written> {
        let key = file_key(id)?;
        let mut up = Uploader::new(self, &key);
        let fed = async {
            for (i, etag) in etags.iter().enumerate() {
                let mut part = self
                    .read(&part_key(id, i as u32 + 1)?, None)
                    .await
                    .map_err(|e| match e.code {
                        ErrorCode::NotFound => {
                            Error::param(format!("part {} was not uploaded", i + 1))
                        }
                        _ => e,
                    })?;
                let mut md5 = Md5::new();
                while let Some(chunk) = part.next().await {
                    let chunk = chunk?;
                    md5.update(&chunk);
                    up.push(chunk, u64::MAX).await?;
                }
                if imsync_core::ids::hex(&md5.finalize()) != etag.trim_matches('"') {
                    return Err(Error::param(format!(
                        "part {}'s etag does not match the part uploaded",
                        i + 1
                    )));
                }
            }
            Ok(())
        }
        .await;
        let written = up.finish(fed).await?;
        self.remove_prefix(&format!("parts/{}/", check_id(id)?))
            .await;
        Ok(written)
    }

    /// The bytes of `key`, all or the inclusive `range`; a missing object is not found.
    pub async fn read(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let url = GetObject::new(&self.bucket, self.creds(), key).sign(SIGNED_FOR);
        let mut req = self.http.get(url);
        if let Some((a, b)) = range {
            req = req.header(reqwest::header::RANGE, format!("bytes={a}-{b}"));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| unavailable("reading an object", e.without_url()))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::not_found("File"));
        }
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(unavailable("reading an object", status));
        }
        Ok(Box::pin(resp.bytes_stream().map_err(|e| {
            Error::internal(format!(
                "reading from the object store: {}",
                e.without_url()
            ))
        })))
    }

    /// Removes a file and whatever parts it had; a missing one is no error.
    pub async fn remove(&self, id: &str) {
        if let Ok(key) = file_key(id) {
            self.delete(&key).await;
        }
        if let Ok(id) = check_id(id) {
            self.remove_prefix(&format!("parts/{id}/")).await;
        }
    }

    pub async fn delete(&self, key: &str) {
        let url = DeleteObject::new(&self.bucket, self.creds(), key).sign(SIGNED_FOR);
        // S3 answers 204 for a missing key too.
        if let Err(e) = self.send("deleting an object", self.http.delete(url)).await {
            tracing::warn!(key, error = %e, "could not remove an object");
        }
    }

    async fn remove_prefix(&self, prefix: &str) {
        match self.list(prefix).await {
            Ok(objects) => {
                for o in objects {
                    self.delete(&o.key).await;
                }
            }
            Err(e) => tracing::warn!(prefix, error = %e, "could not list objects to remove"),
        }
    }

    /// Every object under `prefix`, following continuation tokens.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut list = ListObjectsV2::new(&self.bucket, self.creds());
            list.with_prefix(prefix);
            if let Some(t) = &token {
                list.with_continuation_token(t.clone());
            }
            let resp = self
                .send("listing objects", self.http.get(list.sign(SIGNED_FOR)))
                .await?;
            let text = resp
                .text()
                .await
                .map_err(|e| unavailable("listing objects", e.without_url()))?;
            let page = ListObjectsV2::parse_response(&text)
                .map_err(|e| unavailable("parsing an object listing", e))?;
            out.extend(page.contents.into_iter().map(|c| {
                Listed {
                    modified_ms: c
                        .last_modified
                        .as_deref()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .map_or(i64::MAX, |t| t.as_millisecond()),
                    key: c.key,
                }
            }));
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }
}

/// One object being written: see the module's comment.
struct Uploader<'a> {
    store: &'a ObjectStore,
    key: &'a str,
    buf: BytesMut,
    upload_id: Option<String>,
    etags: Vec<String>,
    size: u64,
    md5: Md5,
    head: Vec<u8>,
}

impl<'a> Uploader<'a> {
    fn new(store: &'a ObjectStore, key: &'a str) -> Uploader<'a> {
        Uploader {
            store,
            key,
            buf: BytesMut::new(),
            upload_id: None,
            etags: Vec::new(),
            size: 0,
            md5: Md5::new(),
            head: Vec::new(),
        }
    }

    async fn push(&mut self, chunk: Bytes, limit: u64) -> Result<()> {
        self.size += chunk.len() as u64;
        if self.size > limit {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("The upload is larger than the {limit} bytes allowed"),
            ));
        }
        self.md5.update(&chunk);
        keep_head(&mut self.head, &chunk);
        self.buf.extend_from_slice(&chunk);
        while self.buf.len() >= PART {
            let part = self.buf.split_to(PART).freeze();
            self.put_part(part).await?;
        }
        Ok(())
    }

    async fn put_part(&mut self, part: Bytes) -> Result<()> {
        let s = self.store;
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let url =
                    CreateMultipartUpload::new(&s.bucket, s.creds(), self.key).sign(SIGNED_FOR);
                let resp = s.send("starting an upload", s.http.post(url)).await?;
                let text = resp
                    .text()
                    .await
                    .map_err(|e| unavailable("starting an upload", e.without_url()))?;
                let created = CreateMultipartUpload::parse_response(&text)
                    .map_err(|e| unavailable("parsing an upload's start", e))?;
                let id = created.upload_id().to_owned();
                self.upload_id = Some(id.clone());
                id
            }
        };
        let n = self.etags.len() as u16 + 1;
        let url = UploadPart::new(&s.bucket, s.creds(), self.key, n, &upload_id).sign(SIGNED_FOR);
        let resp = s
            .send("uploading a part", s.http.put(url).body(part))
            .await?;
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unavailable("uploading a part", "no ETag in the answer"))?;
        self.etags.push(etag.to_owned());
        Ok(())
    }

    /// Completes the object if everything was `fed`, else aborts what was started.
    async fn finish(mut self, fed: Result<()>) -> Result<Written> {
        let done = match fed {
            Ok(()) => self.complete().await,
            Err(e) => Err(e),
        };
        if done.is_err() {
            if let Some(upload_id) = &self.upload_id {
                let s = self.store;
                let url = AbortMultipartUpload::new(&s.bucket, s.creds(), self.key, upload_id)
                    .sign(SIGNED_FOR);
                let _ = s.send("aborting an upload", s.http.delete(url)).await;
            }
        }
        let (size, head) = (self.size, std::mem::take(&mut self.head));
        done.map(|md5| Written { size, md5, head })
    }

    async fn complete(&mut self) -> Result<String> {
        let s = self.store;
        let rest = self.buf.split().freeze();
        if self.upload_id.is_none() {
            let url = PutObject::new(&s.bucket, s.creds(), self.key).sign(SIGNED_FOR);
            s.send("storing an object", s.http.put(url).body(rest))
                .await?;
        } else {
            if !rest.is_empty() {
                self.put_part(rest).await?;
            }
            let upload_id = self.upload_id.clone().unwrap_or_default();
            let action = CompleteMultipartUpload::new(
                &s.bucket,
                s.creds(),
                self.key,
                &upload_id,
                self.etags.iter().map(String::as_str),
            );
            let url = action.sign(SIGNED_FOR);
            let resp = s
                .send("completing an upload", s.http.post(url).body(action.body()))
                .await?;
            // S3 may answer 200 and report the failure in the body.
            let text = resp
                .text()
                .await
                .map_err(|e| unavailable("completing an upload", e.without_url()))?;
            CompleteMultipartUploadResponse::parse(&text)
                .map_err(|e| unavailable("completing an upload", format!("{e}: {text:.300}")))?;
        }
        Ok(imsync_core::ids::hex(&self.md5.clone().finalize()))
    }
}
