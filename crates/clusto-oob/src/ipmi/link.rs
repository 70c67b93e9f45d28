//! One UDP conversation with a BMC: send, wait for the datagram that
//! answers, resend on silence.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::IpmiError;

/// Tries per step: BMCs drop datagrams under load.
const ATTEMPTS: u32 = 3;
const MAX_DATAGRAM: usize = 1024;

pub struct Link {
    sock: UdpSocket,
    pub addr: SocketAddr,
    timeout: Duration,
}

impl Link {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Link, IpmiError> {
        let sock = clusto_snmp_wire::client::connected_udp(addr)
            .await
            .map_err(|source| IpmiError::Io { addr, source })?;
        Ok(Link {
            sock,
            addr,
            timeout,
        })
    }

    /// Sends `datagram` until `accept` takes an answer. Datagrams it
    /// rejects (late answers to an earlier try, garbage) are skipped.
    pub async fn exchange<T>(
        &self,
        step: &'static str,
        datagram: &[u8],
        mut accept: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<T, IpmiError> {
        let io = |source| IpmiError::Io {
            addr: self.addr,
            source,
        };
        let mut buf = [0u8; MAX_DATAGRAM];
        for _ in 0..ATTEMPTS {
            self.sock.send(datagram).await.map_err(io)?;
            let deadline = tokio::time::Instant::now() + self.timeout;
            while let Ok(got) = tokio::time::timeout_at(deadline, self.sock.recv(&mut buf)).await {
                let n = got.map_err(io)?;
                if let Some(t) = accept(&buf[..n]) {
                    return Ok(t);
                }
            }
        }
        Err(IpmiError::Timeout {
            addr: self.addr,
            step,
            attempts: ATTEMPTS,
            timeout: self.timeout,
        })
    }
}
