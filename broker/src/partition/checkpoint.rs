//! The high-watermark checkpoint (Kafka's `replication-offset-checkpoint`):
//! one file per data directory with each hosted partition's high watermark,
//! written periodically and on clean close, atomically (write, fsync, rename).
//! A restarted replica starts from it, so it never serves (or, elected,
//! keeps) a high watermark beyond what was known committed.
//!
//! Owns: the file format. Must not: decide when to write.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crate::log::FileSystem;

/// Name of the checkpoint file in the data directory.
pub const FILE: &str = "replication-offset-checkpoint";
const FORMAT_VERSION: u32 = 0;

/// High watermarks by `(topic, partition)`.
pub type HighWatermarks = BTreeMap<(String, i32), i64>;

/// Reads the checkpoint in `dir`; a missing or unreadable file is empty (the
/// replicas then start from their log start and learn the rest).
pub fn read(fs: &dyn FileSystem, dir: &Path) -> HighWatermarks {
    fs.read(&dir.join(FILE))
        .ok()
        .and_then(|b| parse(&b))
        .unwrap_or_default()
}

/// Writes the checkpoint atomically.
pub fn write(fs: &dyn FileSystem, dir: &Path, hws: &HighWatermarks) -> io::Result<()> {
    let mut text = format!("{FORMAT_VERSION}\n{}\n", hws.len());
    for ((topic, partition), hw) in hws {
        text.push_str(&format!("{topic} {partition} {hw}\n"));
    }
    fs.write_atomic(&dir.join(FILE), text.as_bytes())
}

fn parse(bytes: &[u8]) -> Option<HighWatermarks> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim().parse::<u32>().ok()? != FORMAT_VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut out = BTreeMap::new();
    for line in lines.take(count) {
        // Topic names cannot contain spaces (Kafka's legal characters).
        let mut parts = line.split(' ');
        let topic = parts.next()?.to_owned();
        let partition = parts.next()?.parse().ok()?;
        let hw = parts.next()?.parse().ok()?;
        out.insert((topic, partition), hw);
    }
    (out.len() == count).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::StdFs;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read(&StdFs, dir.path()).is_empty());
        let mut hws = HighWatermarks::new();
        hws.insert(("orders".into(), 0), 42);
        hws.insert(("__consumer_offsets".into(), 17), 0);
        write(&StdFs, dir.path(), &hws).expect("write");
        assert_eq!(read(&StdFs, dir.path()), hws);
        for garbage in ["", "1\n0\n", "0\n2\na 0 1\n", "0\n1\na x 1\n"] {
            std::fs::write(dir.path().join(FILE), garbage).expect("write");
            assert!(read(&StdFs, dir.path()).is_empty(), "{garbage:?}");
        }
    }
}
