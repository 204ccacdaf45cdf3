//! `log_append`: arbitrary bytes appended to a fresh log as leader, then read
//! back, reopened after an unclean stop, reopened after a clean close.
//!
//! Input layout: `[config flags: u8]` then chunks `[chunk flags: u8][len: u16][len bytes]`,
//! each chunk one `append_as_leader` call. Chunk flags: bit 0 recompute CRCs,
//! bit 1 repair length fields, bit 2 start a new leader epoch, bits 4..7 advance
//! the clock by `n * 100` ms.

use std::sync::Arc;

use skiff_broker::log::batch::{self, BatchHeader};
use skiff_broker::log::{Log, LogConfig, StdFs};

use crate::readback::{ReadBatch, read_all};
use crate::shape::{Bytes, fix_batches};

/// Log settings chosen by the first input byte: small segments, time-based rolls,
/// an index entry per batch, tiny index files, preallocation, a small batch limit.
pub fn config(flags: u8) -> LogConfig {
    let d = LogConfig::default();
    LogConfig {
        segment_bytes: if flags & 0x01 != 0 { 300 } else { 1 << 20 },
        segment_ms: if flags & 0x02 != 0 { 250 } else { d.segment_ms },
        index_interval_bytes: if flags & 0x04 != 0 { 0 } else { 4096 },
        segment_index_bytes: if flags & 0x08 != 0 { 24 } else { 64 * 1024 },
        preallocate: flags & 0x10 != 0,
        max_message_bytes: if flags & 0x20 != 0 {
            200
        } else {
            d.max_message_bytes
        },
        retention_ms: -1,
        ..d
    }
}

/// What the test remembers of a successful append.
#[derive(Debug)]
struct Appended {
    base_offset: i64,
    last_offset: i64,
    /// The bytes as stamped by the log (base offsets, leader epoch).
    bytes: Vec<u8>,
}

const NOW: i64 = 1_700_000_000_000;

pub fn run(data: &[u8]) {
    let mut input = Bytes::new(data);
    let cfg = config(input.u8());
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Arc::new(StdFs);
    let mut now = NOW;
    let (mut log, _) =
        Log::open(fs.clone(), dir.path(), cfg.clone(), now).expect("a fresh log opens");
    let mut appended: Vec<Appended> = Vec::new();
    let mut epoch = 0i32;
    let mut appends = 0;
    while !input.is_empty() && appends < 64 {
        appends += 1;
        let flags = input.u8();
        let len = input.u16() as usize;
        let mut chunk = input.take(len).to_vec();
        fix_batches(&mut chunk, flags & 0x02 != 0, flags & 0x01 != 0);
        if flags & 0x04 != 0 {
            epoch += 1;
        }
        now += (flags >> 4) as i64 * 100;
        let leo = log.log_end_offset();
        match log.append_as_leader(&mut chunk, epoch, now) {
            Ok(info) => {
                assert_eq!(info.base_offset, leo, "append did not start at the log end");
                assert!(info.last_offset >= info.base_offset, "{info:?}");
                assert_eq!(log.log_end_offset(), info.last_offset + 1, "{info:?}");
                assert_eq!(info.bytes, chunk.len());
                appended.push(Appended {
                    base_offset: info.base_offset,
                    last_offset: info.last_offset,
                    bytes: chunk,
                });
            }
            Err(e) => {
                assert_eq!(
                    log.log_end_offset(),
                    leo,
                    "failed append moved the log end: {e}"
                );
                assert!(log.offline_reason().is_none(), "log offline after {e}");
            }
        }
    }
    let expected: Vec<u8> = appended
        .iter()
        .flat_map(|a| a.bytes.iter().copied())
        .collect();
    let leo = log.log_end_offset();
    check(&log, &appended, &expected, "after appends");
    check_point_reads(&log, &appended);

    // An unclean stop: recovery must keep every appended batch.
    drop(log);
    let (mut log, report) =
        Log::open(fs.clone(), dir.path(), cfg.clone(), now).expect("reopen after unclean stop");
    assert_eq!(
        log.log_end_offset(),
        leo,
        "recovery changed the log end: {report:?}"
    );
    assert_eq!(
        report.truncated_bytes, 0,
        "recovery cut a log the leader wrote: {report:?}"
    );
    check(&log, &appended, &expected, "after unclean reopen");

    // A clean close: the next open trusts the files and must agree.
    log.close().expect("clean close");
    drop(log);
    let (log, report) = Log::open(fs, dir.path(), cfg, now).expect("reopen after clean close");
    assert!(report.clean, "{report:?}");
    assert_eq!(log.log_end_offset(), leo);
    check(&log, &appended, &expected, "after clean reopen");
    check_point_reads(&log, &appended);
}

fn check(log: &Log, appended: &[Appended], expected: &[u8], when: &str) {
    for max_bytes in [1 << 20, 1] {
        let read = read_all(log, max_bytes).unwrap_or_else(|e| panic!("{when}: {e}"));
        assert_eq!(read.empty_from, None, "{when}: no data below the log end");
        let batches = read.batches;
        let got: Vec<u8> = batches
            .iter()
            .flat_map(|b| b.bytes.iter().copied())
            .collect();
        assert!(
            got == expected,
            "{when}: read back {} bytes in {} batches, appended {} bytes in {} appends",
            got.len(),
            batches.len(),
            expected.len(),
            appended.len()
        );
        contiguous(&batches, when);
    }
}

/// Leader-assigned offsets have no gaps.
fn contiguous(batches: &[ReadBatch], when: &str) {
    for w in batches.windows(2) {
        assert_eq!(
            w[1].header.base_offset,
            w[0].header.last_offset() + 1,
            "{when}: gap between batches"
        );
    }
}

/// Every offset an append reported reads back from the batch that holds it.
fn check_point_reads(log: &Log, appended: &[Appended]) {
    let leo = log.log_end_offset();
    for a in appended {
        let mut headers: Vec<BatchHeader> = Vec::new();
        for item in batch::Batches::new(&a.bytes, true) {
            let (_, h) = item.expect("an appended batch validates");
            headers.push(h);
        }
        assert_eq!(headers.first().map(|h| h.base_offset), Some(a.base_offset));
        assert_eq!(headers.last().map(|h| h.last_offset()), Some(a.last_offset));
        for h in headers.iter().take(16) {
            for offset in [h.base_offset, h.last_offset()] {
                let slice = log
                    .read(offset, 1, leo, true)
                    .unwrap_or_else(|e| panic!("read at appended offset {offset}: {e}"))
                    .unwrap_or_else(|| panic!("nothing at appended offset {offset} (LEO {leo})"));
                assert_eq!(
                    slice.first_offset, h.base_offset,
                    "read at {offset} started at the wrong batch"
                );
            }
        }
    }
}
