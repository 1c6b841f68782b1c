//! Which local UDP addresses a viewer's peer connection binds.
//!
//! By default every session binds an ephemeral port on each configured
//! address. Behind a firewall operators open a fixed range instead
//! (`[streaming] udp_ports`): each peer connection then takes the next port
//! of the range that is free on every configured address, starting after the
//! last one handed out so ports freed a moment ago are not reused at once.
//!
//! The port is checked by binding it and letting go; the peer connection
//! binds it again a moment later. Should another process take it in
//! between, building the connection fails, the page reconnects (with
//! backoff) and the new session gets the next port.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the UDP sockets of peer connections go: the configured addresses,
/// and the port range if one is configured. The cursor is shared by all
/// sessions (it lives in [`super::Sessions`]).
pub struct UdpPorts<'a> {
    pub addresses: &'a [IpAddr],
    pub range: Option<&'a RangeInclusive<u16>>,
    /// Offset into the range of the next port to try.
    pub cursor: &'a AtomicU32,
}

impl UdpPorts<'_> {
    /// The `ip:port` strings for one peer connection: port 0 (ephemeral)
    /// without a range, else a port free on every address.
    pub fn next_bind(&self) -> Result<Vec<String>, String> {
        let Some(range) = self.range else {
            return Ok(self.with_port(0));
        };
        let (start, len) = (u32::from(*range.start()), range.len() as u32);
        for _ in 0..len {
            let offset = self.cursor.fetch_add(1, Ordering::Relaxed) % len;
            let port = (start + offset) as u16;
            if self.free_everywhere(port) {
                return Ok(self.with_port(port));
            }
        }
        Err(format!(
            "no UDP port of {}-{} is free on {}: every port of [streaming] udp_ports is in use; \
             widen the range or lower the number of viewers",
            range.start(),
            range.end(),
            self.describe_addresses()
        ))
    }

    fn with_port(&self, port: u16) -> Vec<String> {
        self.addresses
            .iter()
            .map(|ip| SocketAddr::new(*ip, port).to_string())
            .collect()
    }

    fn free_everywhere(&self, port: u16) -> bool {
        // One address at a time: the peer connection expands `0.0.0.0` to
        // each interface's own address except loopback, so the default pair
        // `0.0.0.0` + `127.0.0.1` never collides with itself — but a probe
        // of the wildcard does fail when any address already has the port.
        self.addresses
            .iter()
            .all(|ip| UdpSocket::bind(SocketAddr::new(*ip, port)).is_ok())
    }

    fn describe_addresses(&self) -> String {
        self.addresses
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Vec<IpAddr> {
        vec![IpAddr::from([127, 0, 0, 1])]
    }

    /// A range of `n` ports on loopback that are free now. Each test
    /// searches its own stretch (`from`) so tests running in parallel never
    /// pick, and then occupy, each other's ports; all below Linux's
    /// ephemeral range (32768+), where other tests' sockets land.
    fn free_range(n: u16, from: u16) -> RangeInclusive<u16> {
        'search: for start in (from..from + 4_000).step_by(7) {
            let mut held = Vec::new();
            for p in start..start + n {
                match UdpSocket::bind(("127.0.0.1", p)) {
                    Ok(s) => held.push(s),
                    Err(_) => continue 'search,
                }
            }
            return start..=start + n - 1;
        }
        panic!("no free loopback UDP range of {n} ports");
    }

    #[test]
    fn without_a_range_every_address_gets_an_ephemeral_port() {
        let addresses = [IpAddr::from([0, 0, 0, 0]), IpAddr::from([127, 0, 0, 1])];
        let cursor = AtomicU32::new(0);
        let p = UdpPorts {
            addresses: &addresses,
            range: None,
            cursor: &cursor,
        };
        assert_eq!(p.next_bind().unwrap(), ["0.0.0.0:0", "127.0.0.1:0"]);
    }

    #[test]
    fn ports_rotate_through_the_range_and_skip_those_in_use() {
        let range = free_range(3, 20_000);
        let first = *range.start();
        let (addresses, cursor) = (loopback(), AtomicU32::new(0));
        let p = UdpPorts {
            addresses: &addresses,
            range: Some(&range),
            cursor: &cursor,
        };
        assert_eq!(p.next_bind().unwrap(), [format!("127.0.0.1:{first}")]);
        // Someone else holds the second port: it is skipped.
        let _taken = UdpSocket::bind(("127.0.0.1", first + 1)).unwrap();
        assert_eq!(p.next_bind().unwrap(), [format!("127.0.0.1:{}", first + 2)]);
        // Round-robin: back to the start, not stuck on the highest port.
        assert_eq!(p.next_bind().unwrap(), [format!("127.0.0.1:{first}")]);
    }

    #[test]
    fn the_default_addresses_share_a_port_of_the_range() {
        let range = free_range(1, 24_000);
        let addresses = [IpAddr::from([0, 0, 0, 0]), IpAddr::from([127, 0, 0, 1])];
        let cursor = AtomicU32::new(0);
        let p = UdpPorts {
            addresses: &addresses,
            range: Some(&range),
            cursor: &cursor,
        };
        let port = *range.start();
        assert_eq!(
            p.next_bind().unwrap(),
            [format!("0.0.0.0:{port}"), format!("127.0.0.1:{port}")]
        );
    }

    #[test]
    fn a_full_range_is_an_error_that_names_the_setting() {
        let range = free_range(2, 28_000);
        let _a = UdpSocket::bind(("127.0.0.1", *range.start())).unwrap();
        let _b = UdpSocket::bind(("127.0.0.1", *range.end())).unwrap();
        let (addresses, cursor) = (loopback(), AtomicU32::new(0));
        let e = UdpPorts {
            addresses: &addresses,
            range: Some(&range),
            cursor: &cursor,
        }
        .next_bind()
        .unwrap_err();
        assert!(e.contains("udp_ports") && e.contains("127.0.0.1"), "{e}");
    }
}
