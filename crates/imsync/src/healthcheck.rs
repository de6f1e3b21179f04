//! `imsync healthcheck`: asks a running server's `/healthz` and exits 0 when it answers 200.
//!
//! Container images and service managers need a probe that does not depend on curl or wget being
//! installed beside the binary; this one reads the same `--listen` setting as `serve`, so the
//! probe and the server cannot disagree about the address.

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Long enough for a loaded server, short enough that a hung one fails its probe rather than
/// piling probes up behind it.
const TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(listen: &str) -> anyhow::Result<()> {
    let addr = probe_address(listen)?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("no server answers at {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("sending the probe to {addr}"))?;
    // The status line is all that is needed; the body is a few bytes, cap what is read anyway.
    let mut head = Vec::with_capacity(256);
    stream
        .take(4096)
        .read_to_end(&mut head)
        .with_context(|| format!("reading the answer from {addr}"))?;
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => bail!("{addr}/healthz answered {code}"),
        None => bail!("{addr} did not answer HTTP"),
    }
}

/// The address to probe for a `--listen` value: a wildcard listener is reached on loopback.
fn probe_address(listen: &str) -> anyhow::Result<SocketAddr> {
    let mut addr = listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {listen} is not an address"))?
        .next()
        .with_context(|| format!("--listen {listen} names no address"))?;
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        addr.set_ip(loopback);
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::probe_address;

    #[test]
    fn a_wildcard_listener_is_probed_on_loopback() {
        assert_eq!(
            probe_address("0.0.0.0:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(probe_address("[::]:9").unwrap().to_string(), "[::1]:9");
        assert_eq!(
            probe_address("10.1.2.3:80").unwrap().to_string(),
            "10.1.2.3:80"
        );
        assert!(probe_address("not an address").is_err());
    }
}
