//! Rewrites the error answers that are not JSON (axum's plain-text rejections of a path, query,
//! body or WebSocket upgrade, an empty 405, a panic) into the format of the face the path belongs
//! to, so that a client of a face only ever parses that face's errors.
//!
//! A layer of its own rather than `middleware::from_fn`: every request passes here, and
//! `from_fn` boxes two futures and clones the inner service per request. Here an answer that needs
//! nothing (every success, every JSON error) costs a status check; only a rewrite allocates.

use crate::error::Face;
use axum::body::Body;
use axum::http::{header, Request};
use axum::response::Response;
use futures_util::future::BoxFuture;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tower::{Layer, Service};

/// The largest error body read to reuse as the message; axum's rejections are one line.
const MAX_REWRITTEN_BODY: usize = 4096;

#[derive(Clone, Copy, Default)]
pub(crate) struct FaceErrorsLayer;

impl<S> Layer<S> for FaceErrorsLayer {
    type Service = FaceErrors<S>;

    fn layer(&self, inner: S) -> FaceErrors<S> {
        FaceErrors { inner }
    }
}

#[derive(Clone)]
pub(crate) struct FaceErrors<S> {
    inner: S,
}

impl<S, B> Service<Request<Body>> for FaceErrors<S>
where
    S: Service<Request<Body>, Response = axum::http::Response<B>, Error = Infallible>,
    B: hyper::body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = FaceErrorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        FaceErrorsFuture {
            face: Face::of(req.uri().path()),
            inner: self.inner.call(req),
            rewrite: None,
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct FaceErrorsFuture<F> {
        #[pin]
        inner: F,
        face: Face,
        rewrite: Option<BoxFuture<'static, Response>>,
    }
}

impl<F, B> Future for FaceErrorsFuture<F>
where
    F: Future<Output = Result<axum::http::Response<B>, Infallible>>,
    B: hyper::body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(rewrite) = this.rewrite.as_mut() {
            return rewrite.as_mut().poll(cx).map(Ok);
        }
        let Ok(resp) = ready!(this.inner.poll(cx));
        let resp = resp.map(Body::new);
        if !needs_rewrite(&resp) {
            return Poll::Ready(Ok(resp));
        }
        let mut rewrite = Box::pin(rewritten(*this.face, resp));
        match rewrite.as_mut().poll(cx) {
            Poll::Ready(resp) => Poll::Ready(Ok(resp)),
            Poll::Pending => {
                *this.rewrite = Some(rewrite);
                Poll::Pending
            }
        }
    }
}

/// An error status whose body is not JSON.
fn needs_rewrite(resp: &Response) -> bool {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    !resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

async fn rewritten(face: Face, resp: Response) -> Response {
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_REWRITTEN_BODY)
        .await
        .unwrap_or_default();
    let mut out = face.rewrite(status, &String::from_utf8_lossy(&text));
    // Headers that tell the client what to do next stay.
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}
