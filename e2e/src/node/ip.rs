//! Pod addresses: every pod gets its own loopback address 127.0.x.y (x ≥ 1),
//! so pods can all listen on the same port, as they would on a real network.
//! Linux routes all of 127.0.0.0/8 to `lo`, so no interface set-up is needed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Hands out 127.0.x.y addresses per pod UID, never the same one to two
/// live pods. Pure bookkeeping.
#[derive(Debug, Default)]
pub struct IpAllocator {
    by_pod: BTreeMap<String, Ipv4Addr>,
    /// Where the next search starts, so a released address is not reused at
    /// once (a restarted pod's old connections may linger).
    next: u32,
}

/// 127.0.1.1 ..= 127.0.255.254, skipping .0 and .255 host bytes.
const FIRST: u32 = u32::from_be_bytes([127, 0, 1, 1]);
const LAST: u32 = u32::from_be_bytes([127, 0, 255, 254]);

impl IpAllocator {
    /// The pod's address, allocating one if it has none; `None` when all
    /// ~65 000 are taken.
    pub fn allocate(&mut self, pod_uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_pod.get(pod_uid) {
            return Some(*ip);
        }
        let span = LAST - FIRST + 1;
        for step in 0..span {
            let candidate = FIRST + (self.next + step) % span;
            let ip = Ipv4Addr::from(candidate);
            let host = ip.octets()[3];
            if host == 0 || host == 255 || self.by_pod.values().any(|used| *used == ip) {
                continue;
            }
            self.next = (self.next + step + 1) % span;
            self.by_pod.insert(pod_uid.to_owned(), ip);
            return Some(ip);
        }
        None
    }

    /// Frees the pod's address.
    pub fn release(&mut self, pod_uid: &str) {
        self.by_pod.remove(pod_uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_stable_and_loopback() {
        let mut ips = IpAllocator::default();
        let a = ips.allocate("a").unwrap();
        let b = ips.allocate("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(ips.allocate("a"), Some(a), "same pod, same address");
        assert!(a.is_loopback() && b.is_loopback());
        assert_ne!(a, Ipv4Addr::LOCALHOST);
        ips.release("a");
        let c = ips.allocate("c").unwrap();
        assert_ne!(c, a, "a released address is not reused immediately");
    }

    #[test]
    fn skips_network_and_broadcast_host_bytes() {
        let mut ips = IpAllocator::default();
        for i in 0..600 {
            let ip = ips.allocate(&i.to_string()).unwrap();
            assert!(ip.octets()[3] != 0 && ip.octets()[3] != 255, "{ip}");
        }
    }
}
