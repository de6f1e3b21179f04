//! A per-client token bucket: `rate` requests per second with bursts of `2 × rate`, keyed by the
//! client's address (the peer's, or the one a trusted proxy forwarded: see `client_addr`). Off when the rate is 0. Over the limit: 429 with `Retry-After`, in the format of
//! the face the path belongs to.

use crate::client_addr::TrustedProxies;
use crate::error::Face;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use imsync_core::{Error, ErrorCode};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct RateLimiter {
    rate: f64,
    trusted: Arc<TrustedProxies>,
    buckets: Arc<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32, trusted: Arc<TrustedProxies>) -> Self {
        RateLimiter {
            rate: rate_per_sec as f64,
            trusted,
            buckets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let burst = self.rate * 2.0;
        let mut buckets = self.buckets.lock();
        if buckets.len() > 100_000 {
            // Forget idle clients rather than grow without bound.
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 60);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub async fn limit(State(limiter): State<RateLimiter>, req: Request, next: Next) -> Response {
    if limiter.rate > 0.0 {
        if let Some(ip) = limiter.trusted.client_of(&req) {
            if !limiter.allow(ip) {
                return Face::of(req.uri().path())
                    .error(Error::new(ErrorCode::RateLimited, "Too many requests"));
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refuses() {
        let l = RateLimiter::new(5, Arc::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let allowed = (0..20).filter(|_| l.allow(ip)).count();
        assert_eq!(allowed, 10);
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.allow(other));
    }
}
