//! The load loops' HTTP client: one keep-alive HTTP/1.1 connection per simulated client, driven
//! by hyper directly. A request is built from a path, a token and a body, and only its status is
//! read (the body is drained), so the generator, which shares the machine with the server it
//! measures, spends as little CPU per request as it can. Setup and checks use [`crate::client`].

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub struct LeanConn {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    auth: Option<HeaderValue>,
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
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        // The connection is driven by its own task; it ends when the sender is dropped.
        tokio::spawn(conn);
        let auth = token
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
            .transpose()?;
        Ok(LeanConn {
            sender,
            host: HeaderValue::from_str(authority)?,
            auth,
        })
    }

    /// Sends one request and answers its status once the body has been read to the end.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        json: Option<Bytes>,
    ) -> Result<StatusCode> {
        let mut req = Request::builder().method(method).uri(path);
        let headers = req.headers_mut().context("building a request")?;
        headers.insert(HOST, self.host.clone());
        if let Some(auth) = &self.auth {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        if json.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let req = req.body(Full::new(json.unwrap_or_default()))?;
        self.sender.ready().await.context("the connection closed")?;
        let resp = self.sender.send_request(req).await.context("request")?;
        let status = resp.status();
        resp.into_body()
            .collect()
            .await
            .context("reading the body")?;
        Ok(status)
    }

    /// [`LeanConn::call`], failing unless the answer has status `want`.
    pub async fn expect(
        &mut self,
        want: StatusCode,
        method: Method,
        path: &str,
        json: Option<Bytes>,
    ) -> Result<()> {
        let got = self.call(method.clone(), path, json).await?;
        if got != want {
            bail!("{method} {path}: {got}, expected {want}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_what_it_cannot_speak() {
        assert!(LeanConn::open("https://127.0.0.1:1", None).await.is_err());
    }
}
