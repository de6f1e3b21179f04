//! Bulk HTTP transfers between a file on disk and the server, one plain socket each. An upload's
//! bytes go from the file to the socket by `std::io::copy` (sendfile on Linux) and a download's
//! from the socket to a file (splice), so the harness never holds a file in memory, and the CPU it
//! spends moving bytes is the kernel's, as `cp`'s is: what the timing shows is the server's path.
//! These calls block; run them on a blocking thread.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::Path;

/// Largest answer head accepted; the server's are a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;
/// The multipart boundary of uploaded forms; it cannot occur in a line of the form's own.
const BOUNDARY: &str = "imsync-bench-7f3a9c1e5b";

/// An answer whose body was read whole (a JSON answer, or an error).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON, failing unless the status is `want`.
    pub fn json(&self, want: u16, what: &str) -> Result<serde_json::Value> {
        if self.status != want {
            bail!(
                "{what}: {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        serde_json::from_slice(&self.body).with_context(|| format!("{what}: the answer's JSON"))
    }
}

/// A server (`http://host:port`) and the token to act with.
#[derive(Clone, Debug)]
pub struct Endpoint {
    authority: String,
    token: String,
}

impl Endpoint {
    pub fn new(base: &str, token: &str) -> Result<Endpoint> {
        let Some(authority) = base
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'))
        else {
            bail!("transfers speak plain http, not {base}");
        };
        if token.bytes().any(|b| b.is_ascii_control()) {
            bail!("a token with control characters cannot go in a header");
        }
        Ok(Endpoint {
            authority: authority.to_owned(),
            token: token.to_owned(),
        })
    }

    fn connect(&self) -> Result<TcpStream> {
        let s = TcpStream::connect(&self.authority)
            .with_context(|| format!("connecting to {}", self.authority))?;
        // The small writes around a body (the form's closing line) must not wait for an ACK.
        s.set_nodelay(true)?;
        Ok(s)
    }

    fn head(&self, method: &str, path: &str, content_type: Option<&str>, len: u64) -> String {
        let mut h = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Connection: close\r\nContent-Length: {len}\r\n",
            self.authority, self.token
        );
        if let Some(t) = content_type {
            h.push_str(&format!("Content-Type: {t}\r\n"));
        }
        h.push_str("\r\n");
        h
    }

    /// POSTs the first `len` bytes of `file` as the field `file` of a multipart form (a presigned
    /// upload), named `file_name`.
    pub fn post_form(&self, path: &str, file: &Path, file_name: &str, len: u64) -> Result<Answer> {
        if file_name.bytes().any(|b| b == b'"' || b.is_ascii_control()) {
            bail!("a file name with quotes or control characters: {file_name:?}");
        }
        let opening = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        );
        let closing = format!("\r\n--{BOUNDARY}--\r\n");
        let total = opening.len() as u64 + len + closing.len() as u64;
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        let head = self.head("POST", path, Some(&content_type), total);
        self.send(&head, &opening, file, 0, len, &closing)
    }

    /// PUTs `len` bytes of `file` from `offset` as the raw body (a part of a multipart upload).
    pub fn put_range(&self, path: &str, file: &Path, offset: u64, len: u64) -> Result<Answer> {
        let head = self.head("PUT", path, Some("application/octet-stream"), len);
        self.send(&head, "", file, offset, len, "")
    }

    fn send(
        &self,
        head: &str,
        opening: &str,
        file: &Path,
        offset: u64,
        len: u64,
        closing: &str,
    ) -> Result<Answer> {
        let mut src = File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let size = src.metadata()?.len();
        if size < offset + len {
            bail!(
                "{} holds {size} bytes, not {len} from {offset}",
                file.display()
            );
        }
        src.seek(SeekFrom::Start(offset))?;
        let mut stream = self.connect()?;
        let sent = (|| -> std::io::Result<u64> {
            stream.write_all(head.as_bytes())?;
            stream.write_all(opening.as_bytes())?;
            let n = std::io::copy(&mut (&mut src).take(len), &mut stream)?;
            stream.write_all(closing.as_bytes())?;
            Ok(n)
        })();
        match sent {
            Ok(n) if n != len => bail!("{} ended after {n} of {len} bytes", file.display()),
            Ok(_) => read_whole(&mut stream),
            // A server that refuses a body answers before reading it all and closes: its answer
            // says more than the broken pipe.
            Err(e) => {
                read_whole(&mut stream).map_err(|_| anyhow::Error::new(e).context("sending a body"))
            }
        }
    }

    /// GETs `path` into a new file `to`; answers the status and the bytes written. An answer
    /// other than 200 is read whole and returned as an error.
    pub fn get_to_file(&self, path: &str, to: &Path) -> Result<u64> {
        let mut stream = self.connect()?;
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.authority, self.token
        );
        stream.write_all(head.as_bytes())?;
        let (status, mut buf, head_len, body_len) = read_head(&mut stream)?;
        if status != 200 {
            let a = finish(&mut stream, status, buf, head_len, body_len)?;
            bail!(
                "GET {path}: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        let mut out = File::create(to).with_context(|| format!("creating {}", to.display()))?;
        let early = buf.split_off(head_len);
        let early = &early[..early.len().min(body_len as usize)];
        out.write_all(early)?;
        let rest = body_len - early.len() as u64;
        let n = std::io::copy(&mut (&mut stream).take(rest), &mut out)?;
        if n != rest {
            bail!(
                "GET {path}: the connection ended after {} of {body_len} bytes",
                early.len() as u64 + n
            );
        }
        Ok(body_len)
    }
}

/// Reads an answer's head: its status, the bytes read so far, the head's length and the body's.
fn read_head(stream: &mut TcpStream) -> Result<(u16, Vec<u8>, usize, u64)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) =
            resp.parse(&buf).context("parsing an answer's head")?
        {
            let status = resp.code.context("no status")?;
            let len = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .context("an answer without Content-Length")?;
            let len = std::str::from_utf8(len.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .context("an unreadable Content-Length")?;
            return Ok((status, buf, head_len, len));
        }
        if buf.len() >= MAX_HEAD {
            bail!("an answer's head is over {MAX_HEAD} bytes");
        }
        let n = stream.read(&mut chunk).context("reading an answer")?;
        if n == 0 {
            bail!("the server closed the connection without an answer");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn read_whole(stream: &mut TcpStream) -> Result<Answer> {
    let (status, buf, head_len, body_len) = read_head(stream)?;
    finish(stream, status, buf, head_len, body_len)
}

/// Reads the rest of a small body (at most 1 MiB: JSON answers and errors).
fn finish(
    stream: &mut TcpStream,
    status: u16,
    buf: Vec<u8>,
    head_len: usize,
    body_len: u64,
) -> Result<Answer> {
    if body_len > 1 << 20 {
        bail!("an answer of {body_len} bytes where a short one was expected");
    }
    let mut body = buf[head_len..].to_vec();
    let want = body_len as usize;
    if body.len() < want {
        let mut rest = vec![0u8; want - body.len()];
        stream
            .read_exact(&mut rest)
            .context("reading an answer's body")?;
        body.extend_from_slice(&rest);
    }
    body.truncate(want);
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-request server: reads a request whole (by its `Content-Length`), answers `answer`,
    /// and hands back what it read.
    fn one_shot(answer: Vec<u8>) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = s.read(&mut chunk).unwrap();
                seen.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
                let Some(h) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&seen[..h]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.parse().unwrap());
                if seen.len() >= h + 4 + len {
                    break;
                }
            }
            s.write_all(&answer).unwrap();
            seen
        });
        (base, t)
    }

    #[test]
    fn a_form_carries_the_file_between_its_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"0123456789").unwrap();
        let (base, server) = one_shot(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec());
        let e = Endpoint::new(&base, "tok").unwrap();
        let a = e.post_form("/up", &src, "a.bin", 6).unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b"{}");
        let seen = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(seen.starts_with("POST /up HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains("Authorization: Bearer tok\r\n"), "{seen}");
        let body = &seen[seen.find("\r\n\r\n").unwrap() + 4..];
        let declared: usize = seen
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), declared);
        assert!(
            body.contains(
                "filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n012345\r\n--"
            ),
            "{body}"
        );
        assert!(body.ends_with(&format!("--{BOUNDARY}--\r\n")), "{body}");
    }

    #[test]
    fn a_part_is_the_range_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"0123456789").unwrap();
        let (base, server) =
            one_shot(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nbad".to_vec());
        let e = Endpoint::new(&base, "tok").unwrap();
        let a = e.put_range("/p/2", &src, 3, 4).unwrap();
        assert_eq!(a.status, 400);
        assert!(a.json(200, "put").unwrap_err().to_string().contains("bad"));
        let seen = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(
            seen.ends_with(
                "Content-Length: 4\r\nContent-Type: application/octet-stream\r\n\r\n3456"
            ),
            "{seen}"
        );
        // A range past the end of the file is the harness's mistake, said as such.
        let (base, _server) = one_shot(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec());
        let e = Endpoint::new(&base, "tok").unwrap();
        let err = e.put_range("/p", &src, 8, 5).unwrap_err();
        assert!(err.to_string().contains("not 5 from 8"), "{err}");
    }

    #[test]
    fn a_download_lands_in_the_file_whole_or_fails() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("got.bin");
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut answer =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        answer.extend_from_slice(&body);
        let (base, _server) = one_shot(answer);
        let e = Endpoint::new(&base, "tok").unwrap();
        assert_eq!(e.get_to_file("/f", &to).unwrap(), body.len() as u64);
        assert!(std::fs::read(&to).unwrap() == body);
        // Cut short: an error, not a short file taken for the whole.
        let mut short = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            body.len() + 5
        )
        .into_bytes();
        short.extend_from_slice(&body);
        let (base, _server) = one_shot(short);
        let e = Endpoint::new(&base, "tok").unwrap();
        let err = e.get_to_file("/f", &to).unwrap_err();
        assert!(err.to_string().contains("ended after"), "{err}");
        let (base, _server) =
            one_shot(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope".to_vec());
        let e = Endpoint::new(&base, "tok").unwrap();
        let err = e.get_to_file("/f", &to).unwrap_err();
        assert!(err.to_string().contains("404 nope"), "{err}");
    }
}
