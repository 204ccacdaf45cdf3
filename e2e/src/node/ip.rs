//! Pod addresses: every pod gets its own loopback address, so pods can all
//! listen on the same port, as they would on a real network. Linux routes
//! all of 127.0.0.0/8 to `lo`, so no interface set-up is needed.
//!
//! Several harnesses may run on one machine at once (`make up` left
//! running, a test binary running two scenarios in parallel, another
//! checkout), so each node agent first claims a block `127.N.0.0/16` of its
//! own ([`AddressBlock`]): an exclusive `flock` on a lock file per block
//! in a directory shared by all of them. The kernel drops the lock when the
//! agent's process exits, however it exits, so a block is never leaked.
//! `127.0.0.0/16` is never used: `127.0.0.1` is localhost, `127.0.0.53` a
//! resolver and `127.0.1.1` the machine's own name on Debian-like systems.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// First and last second octet of a block.
const FIRST_BLOCK: u8 = 1;
const LAST_BLOCK: u8 = 254;

/// The directory holding one lock file per block, shared by every harness
/// on the machine (and every user: it is created world-writable, sticky).
pub fn default_lock_dir() -> PathBuf {
    std::env::temp_dir().join("skiff-e2e-address-blocks")
}

/// A block `127.N.0.0/16` this agent holds until it is dropped.
#[derive(Debug)]
pub struct AddressBlock {
    octet: u8,
    /// Holding the open file holds the lock.
    _lock: Option<File>,
}

impl AddressBlock {
    /// Claims the first free block, using lock files in `lock_dir`.
    pub fn claim(lock_dir: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        if !lock_dir.is_dir() {
            std::fs::create_dir_all(lock_dir)?;
            // Best effort: another user's harness may need to lock here too.
            let _ = std::fs::set_permissions(lock_dir, std::fs::Permissions::from_mode(0o1777));
        }
        for octet in FIRST_BLOCK..=LAST_BLOCK {
            let path = lock_dir.join(format!("127.{octet}.lock"));
            let file = File::options().create(true).append(true).open(&path)?;
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    return Ok(Self {
                        octet,
                        _lock: Some(file),
                    });
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(std::io::Error::other(format!(
            "all {} address blocks in {} are taken",
            LAST_BLOCK - FIRST_BLOCK + 1,
            lock_dir.display()
        )))
    }

    /// Block `127.octet.0.0/16` without any claim (tests; or when claiming
    /// is impossible, at the risk of clashing with another harness).
    pub fn unclaimed(octet: u8) -> Self {
        Self {
            octet: octet.clamp(FIRST_BLOCK, LAST_BLOCK),
            _lock: None,
        }
    }

    /// The second octet, `N` of `127.N.0.0/16`.
    pub fn octet(&self) -> u8 {
        self.octet
    }
}

/// Hands out addresses of one block per pod UID, never the same one to two
/// live pods. Pure bookkeeping.
#[derive(Debug)]
pub struct IpAllocator {
    first: u32,
    by_pod: BTreeMap<String, Ipv4Addr>,
    /// Where the next search starts, so a released address is not reused at
    /// once (a restarted pod's old connections may linger).
    next: u32,
}

/// Addresses per block: 127.N.0.1 ..= 127.N.255.254, skipping .0 and .255
/// host bytes.
const SPAN: u32 = 1 << 16;

impl IpAllocator {
    /// An allocator for `127.octet.0.0/16`.
    pub fn new(octet: u8) -> Self {
        Self {
            first: u32::from_be_bytes([127, octet, 0, 0]),
            by_pod: BTreeMap::new(),
            next: 0,
        }
    }

    /// The pod's address, allocating one if it has none; `None` when all
    /// ~65 000 are taken.
    pub fn allocate(&mut self, pod_uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_pod.get(pod_uid) {
            return Some(*ip);
        }
        for step in 0..SPAN {
            let offset = (self.next + step) % SPAN;
            let ip = Ipv4Addr::from(self.first + offset);
            let host = ip.octets()[3];
            if host == 0 || host == 255 || self.by_pod.values().any(|used| *used == ip) {
                continue;
            }
            self.next = (offset + 1) % SPAN;
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
        let mut ips = IpAllocator::new(3);
        let a = ips.allocate("a").unwrap();
        let b = ips.allocate("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(a, Ipv4Addr::new(127, 3, 0, 1));
        assert_eq!(ips.allocate("a"), Some(a), "same pod, same address");
        assert!(a.is_loopback() && b.is_loopback());
        ips.release("a");
        let c = ips.allocate("c").unwrap();
        assert_ne!(c, a, "a released address is not reused immediately");
    }

    #[test]
    fn stays_in_its_block_and_skips_network_and_broadcast_host_bytes() {
        let mut ips = IpAllocator::new(200);
        for i in 0..600 {
            let ip = ips.allocate(&i.to_string()).unwrap();
            let [a, b, _, d] = ip.octets();
            assert_eq!((a, b), (127, 200), "{ip}");
            assert!(d != 0 && d != 255, "{ip}");
        }
    }

    #[test]
    fn blocks_are_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = AddressBlock::claim(dir.path()).unwrap();
        let second = AddressBlock::claim(dir.path()).unwrap();
        assert_eq!((first.octet(), second.octet()), (1, 2));
        drop(first);
        let third = AddressBlock::claim(dir.path()).unwrap();
        assert_eq!(third.octet(), 1, "a dropped claim frees its block");
        assert_eq!(AddressBlock::unclaimed(0).octet(), 1, "never 127.0/16");
    }
}
