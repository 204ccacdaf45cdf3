//! `segment_recovery`: arbitrary bytes as segment files, then `Log::open`.
//!
//! Input layout: `[flags: u8]`, then, with flag bit 3, `[second segment base: u32]
//! [first segment length: u16]`; then, with bit 4, `[index length: u8][index bytes]`;
//! then, with bit 5, `[recovery point: u32]`; the rest is segment data.
//! Flags: bit 0 recompute CRCs, bit 1 repair length fields, bit 2 write the
//! clean-shutdown marker (segments are then trusted: checked cheaply, not
//! re-validated), bit 3 a second segment, bit 4 a `.index` file for the first
//! segment, bit 5 a `recovery-point` file, bit 6 a small `max.message.bytes`,
//! bit 7 preallocation.
//!
//! Oracles: never a panic; the log always opens (and reopens), spans offsets
//! `0 <= start <= end <= OFFSET_LIMIT` and takes an append at its end, trusted
//! segments or not. When recovery re-validates the segments (nothing trusted),
//! also: the log reads back whole valid batches in ascending offsets up to its
//! end, what it keeps is a prefix of the file, the append reads back, and a
//! second recovery changes nothing.

use std::path::Path;
use std::sync::Arc;

use skiff_broker::log::batch::testing;
use skiff_broker::log::{
    CLEAN_SHUTDOWN_FILE, Log, LogConfig, OFFSET_LIMIT, RECOVERY_POINT_FILE, StdFs,
};

use crate::readback::read_all;
use crate::shape::{Bytes, fix_batches};

const NOW: i64 = 1_700_000_000_000;

fn segment_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write test file");
}

pub fn run(data: &[u8]) {
    let mut input = Bytes::new(data);
    let flags = input.u8();
    let (fix_crc, fix_len) = (flags & 0x01 != 0, flags & 0x02 != 0);
    let clean = flags & 0x04 != 0;
    let second = (flags & 0x08 != 0).then(|| (input.u32() as i64, input.u16() as usize));
    let index = (flags & 0x10 != 0).then(|| {
        let n = input.u8() as usize;
        input.take(n).to_vec()
    });
    let recovery_point = (flags & 0x20 != 0).then(|| input.u32());
    let config = LogConfig {
        max_message_bytes: if flags & 0x40 != 0 { 200 } else { 1 << 20 },
        preallocate: flags & 0x80 != 0,
        segment_bytes: 1 << 20,
        index_interval_bytes: 64,
        ..LogConfig::default()
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let rest = input.rest();
    let (first, later) = match second {
        Some((_, len)) => rest.split_at(len.min(rest.len())),
        None => (rest, &[][..]),
    };
    let mut first = first.to_vec();
    fix_batches(&mut first, fix_len, fix_crc);
    let mut later = later.to_vec();
    fix_batches(&mut later, fix_len, fix_crc);
    let mut segments: Vec<(i64, &[u8])> = vec![(0, &first)];
    if let Some((base, _)) = second {
        // The same name twice: the second file replaces the first.
        if base == 0 {
            segments.clear();
        }
        segments.push((base, &later));
    }
    for &(base, bytes) in &segments {
        write(dir.path(), &segment_name(base, "log"), bytes);
    }
    if let Some(index) = &index {
        write(dir.path(), &segment_name(0, "index"), index);
    }
    if let Some(rp) = recovery_point {
        write(dir.path(), RECOVERY_POINT_FILE, rp.to_string().as_bytes());
    }
    if clean {
        write(dir.path(), CLEAN_SHUTDOWN_FILE, b"");
    }

    // A trusted segment (cleanly closed, or below the recovery point) is
    // believed as far as the checks on open go, so garbage they do not look at
    // may make reads fail (not panic).
    let trusted = clean
        || (segments.len() == 2 && recovery_point.is_some_and(|rp| segments[1].0 <= rp as i64));

    let fs = Arc::new(StdFs);
    let (mut log, report) = match Log::open(fs.clone(), dir.path(), config.clone(), NOW) {
        Ok(opened) => opened,
        Err(e) => panic!("opening the log failed instead of recovering it: {e}"),
    };
    let read = read_all(&log, 1 << 20);
    let leo = log.log_end_offset();
    // Trusted or not, offsets from disk are checked: the log spans a sane range.
    let start = log.log_start_offset();
    assert!(
        0 <= start && start <= leo && leo <= OFFSET_LIMIT,
        "opened log spans [{start}, {leo}); {report:?}"
    );
    if !trusted {
        let read =
            read.unwrap_or_else(|e| panic!("recovered log does not read back: {e}; {report:?}"));
        // The active segment's base is a floor for the log end even when the
        // segment before it ended lower (its later batches lost) and the active
        // one holds nothing: then there is no data from there to the end, which
        // is allowed (Kafka behaves the same). Data must never hide behind a
        // gap: `read_all` fails if a batch follows an empty read.
        if read.empty_from.is_none()
            && let Some(last) = read.batches.last()
        {
            assert_eq!(
                leo,
                last.header.last_offset() + 1,
                "log end vs last batch; {report:?}"
            );
        }
        if segments.len() == 1 {
            // Recovery only cuts: what is left is a prefix of the file.
            let kept: Vec<u8> = read
                .batches
                .iter()
                .flat_map(|b| b.bytes.iter().copied())
                .collect();
            assert!(
                segments[0].1.starts_with(&kept),
                "recovered bytes are not a prefix of the segment"
            );
        }
    }

    // The opened log takes appends where it ends (a trusted one too: its
    // active segment's end was checked on open).
    let mut next = testing::batch(3, 8, NOW);
    let epoch = log.epochs().latest().map_or(0, |e| e.epoch.max(0)) + 1;
    match log.append_as_leader(&mut next, epoch, NOW) {
        Ok(info) => {
            assert_eq!(info.base_offset, leo);
            if !trusted {
                let slice = log
                    .read(info.base_offset, 1 << 20, info.last_offset + 1, true)
                    .expect("read the appended batch")
                    .expect("the appended batch is there");
                assert_eq!(slice.first_offset, info.base_offset);
            }
        }
        Err(e) => panic!("append to an opened log at {leo} failed: {e}"),
    }

    // Recovery is idempotent: an unclean stop now loses nothing.
    let before = read_all(&log, 1 << 20);
    let leo = log.log_end_offset();
    let max_timestamp = log.max_timestamp();
    drop(log);
    let reopened = Log::open(fs, dir.path(), config, NOW);
    let (log, report) = reopened
        .unwrap_or_else(|e| panic!("reopening the log failed instead of recovering it: {e}"));
    if trusted {
        let _ = read_all(&log, 1 << 20);
        return;
    }
    let before = before.expect("read after append").batches;
    assert_eq!(
        log.log_end_offset(),
        leo,
        "second recovery moved the log end: {report:?}"
    );
    assert_eq!(
        log.max_timestamp(),
        max_timestamp,
        "second recovery changed the newest timestamp: {report:?}"
    );
    let after = read_all(&log, 1 << 20)
        .expect("read after second recovery")
        .batches;
    assert!(
        before.len() == after.len() && before.iter().zip(&after).all(|(a, b)| a.bytes == b.bytes),
        "second recovery changed the log: {report:?}"
    );
}
