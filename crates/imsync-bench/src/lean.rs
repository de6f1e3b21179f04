//! The load loops' HTTP client: one keep-alive HTTP/1.1 connection per simulated client, spoken
//! over the socket directly. The generator shares the machine with the server it measures, so a
//! request costs it one write and usually one read: the head is written from a prepared prefix,
//! the answer's head is parsed in place and its body skipped by its `Content-Length`. No task per
//! connection and no body types, which is what a general client such as hyper's spends on top.
//! Setup and checks use [`crate::client`].

use anyhow::{bail, Context, Result};
use reqwest::{Method, StatusCode};
use std::io::Write as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer head accepted; the server's are a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;

pub struct LeanConn {
    stream: TcpStream,
    /// `Host` and `Authorization` lines, written after every request line.
    fixed_headers: String,
    out: Vec<u8>,
    /// Bytes read past the answer being parsed.
    inbuf: Vec<u8>,
}

impl LeanConn {
    /// Connects to `base` (`http://host:port`), authenticating every request with `token`.
    pub async fn open(base: &str, token: Option<&str>) -> Result<LeanConn> {
        let Some(authority) = base
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'))
        else {
            bail!("the load client speaks plain http, not {base}");
        };
        let stream = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        stream.set_nodelay(true)?;
        let mut fixed_headers = format!("Host: {authority}\r\n");
        if let Some(t) = token {
            if t.bytes().any(|b| b.is_ascii_control()) {
                bail!("a token with control characters cannot go in a header");
            }
            fixed_headers.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        Ok(LeanConn {
            stream,
            fixed_headers,
            out: Vec::with_capacity(512),
            inbuf: Vec::with_capacity(4096),
        })
    }

    /// Sends one request and answers its status once the body has been read to the end.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        json: Option<&[u8]>,
    ) -> Result<StatusCode> {
        self.out.clear();
        for part in [
            method.as_str(),
            " ",
            path,
            " HTTP/1.1\r\n",
            &self.fixed_headers,
        ] {
            self.out.extend_from_slice(part.as_bytes());
        }
        if let Some(body) = json {
            write!(
                self.out,
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )?;
            self.out.extend_from_slice(body);
        } else {
            self.out.extend_from_slice(b"\r\n");
        }
        self.stream
            .write_all(&self.out)
            .await
            .context("writing a request")?;
        self.read_answer().await
    }

    /// [`LeanConn::call`], failing unless the answer has status `want`.
    pub async fn expect(
        &mut self,
        want: StatusCode,
        method: Method,
        path: &str,
        json: Option<&[u8]>,
    ) -> Result<()> {
        let got = self.call(method.clone(), path, json).await?;
        if got != want {
            bail!("{method} {path}: {got}, expected {want}");
        }
        Ok(())
    }

    async fn read_answer(&mut self) -> Result<StatusCode> {
        let (status, head_len, body_len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp
                .parse(&self.inbuf)
                .context("parsing an answer's head")?
            {
                httparse::Status::Complete(head_len) => {
                    let status = StatusCode::from_u16(resp.code.context("no status")?)?;
                    let body_len = content_length(resp.headers)?;
                    break (status, head_len, body_len);
                }
                httparse::Status::Partial if self.inbuf.len() >= MAX_HEAD => {
                    bail!("an answer's head is over {MAX_HEAD} bytes")
                }
                httparse::Status::Partial => self.fill().await?,
            }
        };
        let end = head_len + body_len;
        while self.inbuf.len() < end {
            self.fill().await?;
        }
        self.inbuf.drain(..end);
        Ok(status)
    }

    async fn fill(&mut self) -> Result<()> {
        if self.inbuf.capacity() - self.inbuf.len() < 1024 {
            self.inbuf.reserve(4096);
        }
        let n = self
            .stream
            .read_buf(&mut self.inbuf)
            .await
            .context("reading an answer")?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

/// The body length an answer announces; answers without one (chunked or close-delimited) are
/// refused, since every answer of the measured endpoints has a known length.
fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize> {
    let h = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .context("an answer without Content-Length")?;
    std::str::from_utf8(h.value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .context("an unreadable Content-Length")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn refuses_what_it_cannot_speak() {
        assert!(LeanConn::open("https://127.0.0.1:1", None).await.is_err());
    }

    /// A scripted server: answers each request it reads with the next canned answer, in pieces.
    async fn scripted(answers: Vec<&'static [u8]>) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for a in answers {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                // The head and the body arrive apart, to exercise the partial reads.
                let split = a.len() / 2;
                s.write_all(&a[..split]).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                s.write_all(&a[split..]).await.unwrap();
            }
            seen
        });
        (base, task)
    }

    #[tokio::test]
    async fn reads_answers_back_to_back_on_one_connection() {
        let (base, server) = scripted(vec![
            b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ])
        .await;
        let mut conn = LeanConn::open(&base, Some("tok")).await.unwrap();
        conn.expect(StatusCode::CREATED, Method::POST, "/a", Some(b"{}"))
            .await
            .unwrap();
        let err = conn
            .expect(StatusCode::OK, Method::GET, "/b", None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
        let seen = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(seen.starts_with("POST /a HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains("Authorization: Bearer tok\r\n"), "{seen}");
        assert!(seen.contains("Content-Length: 2\r\n\r\n{}GET /b"), "{seen}");
    }

    #[tokio::test]
    async fn refuses_an_answer_without_a_length() {
        let (base, _server) = scripted(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ])
        .await;
        let mut conn = LeanConn::open(&base, None).await.unwrap();
        let err = conn.call(Method::GET, "/", None).await.unwrap_err();
        assert!(err.to_string().contains("Content-Length"), "{err}");
    }
}
