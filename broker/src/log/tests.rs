//! Tests of the partition log as a whole: round trips, rolling, lookups,
//! truncation, retention, recovery, fault injection and group commit.

use std::path::Path;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::batch::testing::batch;
use super::fs::{Fault, FaultyFs};
use super::*;

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig) -> (Log, RecoveryReport) {
    Log::open(Arc::new(StdFs), dir, config, 0).expect("open log")
}

/// Appends `n` batches of 3 records (100-byte values), returning each stored batch.
fn append_batches(log: &mut Log, n: usize, epoch: i32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut b = batch(3, 100, 1_000 + i as i64 * 10);
            log.append_as_leader(&mut b, epoch, 0).expect("append");
            b
        })
        .collect()
}

/// Every batch in the log, as bytes, read through the public read path.
fn read_all(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let slice = log
            .read(offset, 1 << 20, i64::MAX, true)
            .expect("read")
            .expect("data below LEO");
        let mut buf = Vec::new();
        slice.read_into(&mut buf).expect("read slice");
        for item in batch::Batches::new(&buf, true) {
            let Ok((pos, h)) = item else { break }; // a byte limit may cut the last batch
            out.push(buf[pos..pos + h.size().expect("size")].to_vec());
            offset = h.last_offset() + 1;
        }
    }
    out
}

#[test]
fn append_then_read_round_trips_across_segment_rolls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, report) = open(dir.path(), small_config());
    assert!(!report.clean && report.truncated_at.is_none());
    let written = append_batches(&mut log, 60, 0);
    assert!(
        log.segment_count() > 5,
        "expected several segments, got {}",
        log.segment_count()
    );
    assert_eq!(log.log_end_offset(), 180);
    assert_eq!(read_all(&log), written);
    for (i, b) in written.iter().enumerate() {
        let h = BatchHeader::parse(b).expect("header");
        assert_eq!(
            h.base_offset,
            3 * i as i64,
            "offsets are assigned contiguously"
        );
    }
}

#[test]
fn lookup_of_every_offset_matches_a_linear_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_config());
    append_batches(&mut log, 40, 0);
    let mut headers = Vec::new();
    log.for_each_batch(0, |h| headers.push(*h)).expect("scan");
    for offset in 0..log.log_end_offset() {
        let want = headers
            .iter()
            .find(|h| h.last_offset() >= offset)
            .expect("batch")
            .base_offset;
        let got = log
            .read(offset, 1, i64::MAX, true)
            .expect("read")
            .expect("slice")
            .first_offset;
        assert_eq!(got, want, "offset {offset}");
    }
    assert!(
        log.read(log.log_end_offset(), 100, i64::MAX, true)
            .expect("read at LEO")
            .is_none()
    );
    assert!(matches!(
        log.read(181, 100, i64::MAX, true),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn reads_stop_at_max_offset_and_respect_max_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), LogConfig::default());
    let written = append_batches(&mut log, 10, 0);
    let size = written[0].len();
    // High watermark at offset 9: batches 0..3 only.
    let slice = log
        .read(0, 1 << 20, 9, false)
        .expect("read")
        .expect("slice");
    assert_eq!(slice.len, 3 * size);
    assert!(log.read(9, 1 << 20, 9, false).expect("read").is_none());
    // max_bytes smaller than a batch: nothing, unless min_one_batch.
    assert!(
        log.read(0, size - 1, i64::MAX, false)
            .expect("read")
            .is_none_or(|s| s.len == size - 1)
    );
    assert_eq!(
        log.read(0, 10, i64::MAX, true)
            .expect("read")
            .expect("slice")
            .len,
        size
    );
}

#[test]
fn timestamp_lookup_finds_first_record_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_config());
    append_batches(&mut log, 40, 0); // batch i: timestamps 1000+10i .. +2, offsets 3i..3i+2
    assert_eq!(
        log.offset_for_timestamp(0).expect("lookup"),
        Some((0, 1000))
    );
    assert_eq!(
        log.offset_for_timestamp(1_051).expect("lookup"),
        Some((16, 1_051))
    );
    assert_eq!(
        log.offset_for_timestamp(1_055).expect("lookup"),
        Some((18, 1_060))
    );
    assert_eq!(log.offset_for_timestamp(5_000).expect("lookup"), None);
    assert_eq!(log.max_timestamp(), Some((1_392, 119)));
}

#[test]
fn truncation_then_append_continues_from_the_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_config());
    let mut written = append_batches(&mut log, 40, 1);
    // Offset 50 is inside batch 16 (offsets 48..50): the cut is at its start.
    assert_eq!(log.truncate_to(50).expect("truncate"), 48);
    written.truncate(16);
    assert_eq!(read_all(&log), written);
    written.extend(append_batches(&mut log, 5, 2));
    assert_eq!(read_all(&log), written);
    assert_eq!(
        log.epochs().entries(),
        &[
            EpochEntry {
                epoch: 1,
                start_offset: 0
            },
            EpochEntry {
                epoch: 2,
                start_offset: 48
            }
        ]
    );
    // Survives a reopen, clean or not.
    drop(log);
    let (log, _) = open(dir.path(), small_config());
    assert_eq!(read_all(&log), written);
    assert_eq!(
        log.epochs().latest(),
        Some(EpochEntry {
            epoch: 2,
            start_offset: 48
        })
    );
}

#[test]
fn truncation_to_the_log_start_empties_and_restarts_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_config());
    append_batches(&mut log, 20, 0);
    log.truncate_fully_and_start_at(500)
        .expect("truncate fully");
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (500, 500, 1)
    );
    append_batches(&mut log, 1, 3);
    assert_eq!(log.log_end_offset(), 503);
}

#[test]
fn leader_epochs_are_recorded_and_answer_diverging_epoch_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_config());
    append_batches(&mut log, 2, 1);
    append_batches(&mut log, 2, 3);
    assert_eq!(
        log.epochs().end_offset_for(2, log.log_end_offset()),
        Some((1, 6))
    );
    assert_eq!(
        log.epochs().end_offset_for(3, log.log_end_offset()),
        Some((3, 12))
    );
    let mut epochs = Vec::new();
    log.for_each_batch(0, |h| epochs.push(h.partition_leader_epoch))
        .expect("scan");
    assert_eq!(epochs, [1, 1, 3, 3]);
}

#[test]
fn follower_append_keeps_leader_offsets_and_refuses_overlap() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (mut leader, _) = open(leader_dir.path(), small_config());
    let written = append_batches(&mut leader, 10, 4);
    let (mut follower, _) = open(follower_dir.path(), small_config());
    let mut fetched = Vec::new();
    leader
        .read(0, 1 << 20, i64::MAX, true)
        .expect("read")
        .expect("slice")
        .read_into(&mut fetched)
        .expect("bytes");
    follower.append_as_follower(&fetched, 0).expect("replicate");
    assert_eq!(read_all(&follower), written);
    assert_eq!(
        follower.epochs().latest(),
        Some(EpochEntry {
            epoch: 4,
            start_offset: 0
        })
    );
    assert!(matches!(
        follower.append_as_follower(&written[3], 0),
        Err(AppendError::OffsetBehindLogEnd { .. })
    ));
}

#[test]
fn invalid_or_oversized_batches_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        max_message_bytes: 2_000,
        ..small_config()
    };
    let (mut log, _) = open(dir.path(), config);
    append_batches(&mut log, 1, 0);
    let mut corrupt = batch(2, 10, 0);
    *corrupt.last_mut().expect("byte") ^= 1;
    assert!(matches!(
        log.append_as_leader(&mut corrupt, 0, 0),
        Err(AppendError::InvalidBatch {
            reason: BatchError::CrcMismatch { .. },
            ..
        })
    ));
    let mut big = batch(1, 3_000, 0);
    assert!(matches!(
        log.append_as_leader(&mut big, 0, 0),
        Err(AppendError::BatchTooLarge { .. })
    ));
    assert!(matches!(
        log.append_as_leader(&mut [], 0, 0),
        Err(AppendError::Empty)
    ));
    let mut two_then_junk = batch(1, 10, 0);
    two_then_junk.extend([0u8; 30]);
    assert!(matches!(
        log.append_as_leader(&mut two_then_junk, 0, 0),
        Err(AppendError::InvalidBatch { .. })
    ));
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn retention_by_bytes_and_time_never_deletes_the_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(
        dir.path(),
        LogConfig {
            retention_bytes: 0,
            ..small_config()
        },
    );
    append_batches(&mut log, 40, 0);
    let segments = log.segment_count();
    // Nothing above the high watermark goes, even if over the limit.
    assert_eq!(log.apply_retention(0, 0).expect("retention"), 0);
    assert_eq!(log.segment_count(), segments);
    let start = log
        .apply_retention(0, log.log_end_offset())
        .expect("retention");
    assert_eq!(log.segment_count(), 1, "only the active segment is left");
    assert_eq!(start, log.log_start_offset());
    assert!(matches!(
        log.read(0, 100, i64::MAX, true),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    assert!(
        log.read(start, 100, i64::MAX, true)
            .expect("read")
            .is_some()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(
        dir.path(),
        LogConfig {
            retention_ms: 1_000,
            ..small_config()
        },
    );
    append_batches(&mut log, 40, 0); // timestamps 1000..1392
    log.apply_retention(1_500, i64::MAX).expect("retention");
    assert!(
        log.segment_count() > 1,
        "records newer than now-1000ms stay"
    );
    log.apply_retention(1_000_000, i64::MAX).expect("retention");
    assert_eq!(log.segment_count(), 1);
}

#[test]
fn clean_close_skips_recovery_and_reopens_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_config());
    let written = append_batches(&mut log, 30, 2);
    log.close().expect("close");
    let active = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().expect("meta").len())
        .max()
        .expect("segments");
    assert!(active <= 4096, "segments are trimmed on close");
    let (log, report) = open(dir.path(), small_config());
    assert!(report.clean);
    assert_eq!(report.segments_recovered, 0);
    assert_eq!(read_all(&log), written);
    assert_eq!(
        log.offset_for_timestamp(1_100).expect("lookup"),
        Some((30, 1_100))
    );
}

#[test]
fn unclean_stop_recovers_every_appended_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_config());
    let written = append_batches(&mut log, 30, 0);
    drop(log); // no close: the preallocated active segment has a zero tail
    let (log, report) = open(dir.path(), small_config());
    assert!(!report.clean && report.segments_recovered >= 1);
    assert_eq!(
        report.truncated_at, None,
        "a zero-filled tail is not corruption"
    );
    assert_eq!(read_all(&log), written);
}

/// Appends keep the page cache zero-filled ahead of the data
/// (`segment::ZERO_AHEAD`). The zeros never reach into data, whatever a
/// truncation cut, and after a crash recovery takes them for the preallocated
/// tail they stand in for.
#[test]
fn zeros_written_ahead_of_appends_never_touch_data() {
    let window = segment::ZERO_AHEAD;
    let config = LogConfig {
        segment_bytes: 4 * window,
        index_interval_bytes: 4096,
        ..LogConfig::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), config.clone());
    let append = |log: &mut Log, n: usize, epoch: i32| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                // 16 records of 1 KiB: unaligned batches of about 16.5 KiB.
                let mut b = batch(16, 1024, i as i64);
                log.append_as_leader(&mut b, epoch, 0).expect("append");
                b
            })
            .collect()
    };
    let mut written = append(&mut log, 40, 1);
    assert_eq!(log.segment_count(), 1, "all within one segment");
    // Cut inside the second window, then write over the cut and past it.
    assert_eq!(log.truncate_to(16 * 20 + 3).expect("truncate"), 16 * 20);
    written.truncate(20);
    written.extend(append(&mut log, 25, 2));
    assert_eq!(read_all(&log), written);

    let data: u64 = written.iter().map(|b| b.len() as u64).sum();
    let file = std::fs::read(dir.path().join(segment::file_name(0, "log"))).expect("read");
    assert_eq!(file.len() as u64, 4 * window, "preallocated length");
    assert!(
        file[data as usize..].iter().all(|&b| b == 0),
        "only zeros after the data"
    );

    drop(log); // unclean: the zeros written ahead look like a preallocated tail
    let (log, report) = open(dir.path(), config);
    assert!(!report.clean);
    assert_eq!(report.truncated_at, None, "zeros are not corruption");
    assert_eq!(read_all(&log), written);
}

/// The log size is what DescribeLogDirs and the rebalance planner see: the
/// bytes of batches, before and after recovery, never the preallocated length.
#[test]
fn size_counts_batch_bytes_not_preallocated_file_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_config());
    let written: u64 = append_batches(&mut log, 12, 0)
        .iter()
        .map(|b| b.len() as u64)
        .sum();
    let file_lengths = || -> u64 {
        std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .map(|p| std::fs::metadata(p).expect("meta").len())
            .sum()
    };
    assert!(log.segment_count() > 1);
    assert_eq!(log.size_bytes(), written);
    assert!(
        file_lengths() > written,
        "the active segment is preallocated"
    );
    drop(log); // unclean: recovery finds where the batches end
    let (mut log, report) = open(dir.path(), small_config());
    assert!(!report.clean);
    assert_eq!(log.size_bytes(), written);
    log.close().expect("close");
    let (log, report) = open(dir.path(), small_config());
    assert!(report.clean);
    assert_eq!(log.size_bytes(), written);
}

#[test]
fn damaged_index_is_rebuilt_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_config());
    let written = append_batches(&mut log, 30, 0);
    log.close().expect("close");
    let index = dir.path().join(segment::file_name(0, "index"));
    std::fs::write(&index, [0xffu8; 16]).expect("scribble");
    let (log, report) = open(dir.path(), small_config());
    assert_eq!(report.segments_recovered, 1);
    assert_eq!(read_all(&log), written);
}

#[test]
fn torn_write_fails_the_append_and_leaves_the_log_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new();
    let (mut log, _) =
        Log::open(Arc::new(fs.clone()), dir.path(), small_config(), 0).expect("open");
    let mut written = append_batches(&mut log, 3, 0);
    fs.arm(Fault::TornWrite(50));
    let mut b = batch(3, 100, 0);
    assert!(matches!(
        log.append_as_leader(&mut b, 0, 0),
        Err(AppendError::Io { .. })
    ));
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(read_all(&log), written);
    written.extend(append_batches(&mut log, 2, 0));
    drop(log);
    let (log, report) = Log::open(Arc::new(fs), dir.path(), small_config(), 0).expect("reopen");
    assert_eq!(report.truncated_at, None);
    assert_eq!(read_all(&log), written);
}

#[test]
fn short_writes_are_retried_until_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new();
    fs.arm(Fault::ShortWrites(7));
    let (mut log, _) = Log::open(Arc::new(fs), dir.path(), small_config(), 0).expect("open");
    let written = append_batches(&mut log, 20, 0);
    assert_eq!(read_all(&log), written);
}

#[test]
fn full_disk_fails_appends_cleanly_and_the_log_stays_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new();
    let (mut log, _) =
        Log::open(Arc::new(fs.clone()), dir.path(), small_config(), 0).expect("open");
    let mut written = append_batches(&mut log, 5, 0);
    fs.arm(Fault::DiskFullAfter(500));
    let mut failures = 0;
    for _ in 0..20 {
        let mut b = batch(3, 100, 0);
        match log.append_as_leader(&mut b, 0, 0) {
            Ok(_) => written.push(b),
            Err(AppendError::Io { source, .. }) if source.raw_os_error() == Some(28) => {
                failures += 1
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(failures > 0);
    assert!(
        log.offline_reason().is_none(),
        "ENOSPC does not take the log offline"
    );
    assert_eq!(read_all(&log), written);
    fs.heal();
    written.extend(append_batches(&mut log, 30, 0)); // rolls segments again
    assert_eq!(read_all(&log), written);
    drop(log);
    let (log, report) = Log::open(Arc::new(fs), dir.path(), small_config(), 0).expect("reopen");
    assert_eq!(report.truncated_at, None);
    assert_eq!(read_all(&log), written);
}

#[test]
fn failed_fsync_takes_the_log_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new();
    let (mut log, _) =
        Log::open(Arc::new(fs.clone()), dir.path(), small_config(), 0).expect("open");
    let written = append_batches(&mut log, 3, 0);
    fs.arm(Fault::FsyncFails);
    assert!(log.flush().is_err());
    assert!(log.offline_reason().is_some());
    let mut b = batch(1, 1, 0);
    assert!(matches!(
        log.append_as_leader(&mut b, 0, 0),
        Err(AppendError::Offline { .. })
    ));
    assert_eq!(read_all(&log), written, "an offline log still serves reads");
}

#[test]
fn flush_messages_marks_an_fsync_due() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(
        dir.path(),
        LogConfig {
            flush_messages: 5,
            ..small_config()
        },
    );
    let mut b = batch(3, 1, 0);
    assert!(
        !log.append_as_leader(&mut b, 0, 0)
            .expect("append")
            .flush_due
    );
    let mut b = batch(3, 1, 0);
    assert!(
        log.append_as_leader(&mut b, 0, 0)
            .expect("append")
            .flush_due
    );
    log.flush().expect("flush");
    assert_eq!(log.durable_offset(), 6);
}

#[test]
fn segment_ms_rolls_on_the_next_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(
        dir.path(),
        LogConfig {
            segment_ms: 100,
            ..LogConfig::default()
        },
    );
    let mut b = batch(1, 1, 0);
    log.append_as_leader(&mut b, 0, 10).expect("append");
    let mut b = batch(1, 1, 0);
    log.append_as_leader(&mut b, 0, 50).expect("append");
    assert_eq!(log.segment_count(), 1);
    let mut b = batch(1, 1, 0);
    log.append_as_leader(&mut b, 0, 200).expect("append");
    assert_eq!(log.segment_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_covers_many_waiters_with_few_fsyncs() {
    #[derive(Debug)]
    struct Counting(Mutex<Log>, std::sync::atomic::AtomicUsize);
    impl flush::FlushTarget for Counting {
        fn prepare(&self) -> flush::Prepared {
            flush::Prepared::of(&mut self.0.lock().expect("lock"))
        }
        fn complete(
            &self,
            ticket: &FlushTicket,
            result: std::io::Result<()>,
        ) -> Result<(), String> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0
                .lock()
                .expect("lock")
                .complete_flush(ticket, result)
                .map_err(|e| e.to_string())
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), LogConfig::default());
    let target = Arc::new(Counting(Mutex::new(log), Default::default()));
    let gc = flush::GroupCommit::spawn(target.clone(), 0, None);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (target, gc) = (target.clone(), gc.clone());
        tasks.push(tokio::spawn(async move {
            let end = {
                let mut b = batch(2, 100, 0);
                target
                    .0
                    .lock()
                    .expect("lock")
                    .append_as_leader(&mut b, 0, 0)
                    .expect("append")
                    .last_offset
                    + 1
            };
            gc.wait_durable(end).await.expect("durable");
            end
        }));
    }
    for t in tasks {
        let end = t.await.expect("task");
        assert!(target.0.lock().expect("lock").durable_offset() >= end);
    }
    let fsyncs = target.1.load(std::sync::atomic::Ordering::SeqCst);
    assert!(fsyncs < 200, "200 waiters took {fsyncs} fsyncs");
    gc.stop();
}

#[tokio::test]
async fn group_commit_reports_a_failed_fsync_to_waiters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new();
    let (mut log, _) =
        Log::open(Arc::new(fs.clone()), dir.path(), LogConfig::default(), 0).expect("open");
    append_batches(&mut log, 1, 0);
    let log = Arc::new(Mutex::new(log));
    let gc = flush::GroupCommit::spawn(log.clone(), 0, None);
    fs.arm(Fault::FsyncFails);
    assert!(gc.wait_durable(3).await.is_err());
    assert!(gc.wait_durable(1).await.is_err(), "later waiters fail too");
}

/// One segment (1 MiB) with an offset-index entry every `index_interval_bytes`.
fn one_segment_config(index_interval_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes,
        ..LogConfig::default()
    }
}

/// A log of `n` batches of 3 records, closed cleanly (so the next open trusts
/// it); returns what was written.
fn closed_log(dir: &Path, n: usize, config: LogConfig) -> Vec<Vec<u8>> {
    let (mut log, _) = open(dir, config);
    let written = append_batches(&mut log, n, 0);
    log.close().expect("close");
    written
}

/// Position of each batch in a segment holding `written` from its start.
fn positions(written: &[Vec<u8>]) -> Vec<u64> {
    written
        .iter()
        .scan(0u64, |pos, b| {
            let at = *pos;
            *pos += b.len() as u64;
            Some(at)
        })
        .collect()
}

fn write_offset_index(dir: &Path, entries: &[(u32, u32)]) {
    let bytes: Vec<u8> = entries
        .iter()
        .flat_map(|(rel, pos)| rel.to_be_bytes().into_iter().chain(pos.to_be_bytes()))
        .collect();
    std::fs::write(dir.join(segment::file_name(0, "index")), bytes).expect("write index");
}

fn write_time_index(dir: &Path, entries: &[(i64, u32)]) {
    let bytes: Vec<u8> = entries
        .iter()
        .flat_map(|(ts, rel)| ts.to_be_bytes().into_iter().chain(rel.to_be_bytes()))
        .collect();
    std::fs::write(dir.join(segment::file_name(0, "timeindex")), bytes).expect("write index");
}

#[test]
fn trusted_segment_with_a_contradictory_index_is_revalidated() {
    type Case = (
        &'static str,
        fn(&[u64], u64) -> Vec<(u32, u32)>,
        fn(&IndexError) -> bool,
    );
    // Entries of the offset index, from the batches' positions and the file
    // size; batch i starts at offset 3i. What the open must find wrong.
    let cases: [Case; 6] = [
        (
            "fuzz finding: garbage entries",
            |_, _| vec![(2, 70), (0x2b_0005, 0)],
            |e| matches!(e, IndexError::OffsetEntryOutOfOrder { entry: 1, .. }),
        ),
        (
            "two entries swapped",
            |p, _| vec![(3, p[1] as u32), (9, p[3] as u32), (6, p[2] as u32)],
            |e| matches!(e, IndexError::OffsetEntryOutOfOrder { entry: 2, .. }),
        ),
        (
            "entry past the end of the data",
            |p, size| vec![(3, p[1] as u32), (27, size as u32)],
            |e| matches!(e, IndexError::OffsetEntryPastEnd { entry: 1, .. }),
        ),
        (
            "last entry inside a batch",
            |p, _| vec![(3, p[1] as u32), (27, p[9] as u32 + 1)],
            |e| matches!(e, IndexError::OffsetEntryMisplaced { entry: 1, .. }),
        ),
        (
            "last entry names another batch's offset",
            |p, _| vec![(3, p[1] as u32), (24, p[9] as u32)],
            |e| matches!(e, IndexError::OffsetEntryMisplaced { entry: 1, .. }),
        ),
        (
            "only entry inside the first batch",
            |_, _| vec![(0, 10)],
            |e| matches!(e, IndexError::OffsetEntryMisplaced { entry: 0, .. }),
        ),
    ];
    for (name, entries, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = closed_log(dir.path(), 10, one_segment_config(256));
        let size: u64 = written.iter().map(|b| b.len() as u64).sum();
        write_offset_index(dir.path(), &entries(&positions(&written), size));
        check_revalidated(dir.path(), &written, name, expected);
    }
}

#[test]
fn trusted_segment_with_a_contradictory_time_index_is_revalidated() {
    type Case = (&'static str, Vec<(i64, u32)>, fn(&IndexError) -> bool);
    let cases: [Case; 2] = [
        (
            "entry past the segment's end offset",
            vec![(1_000, 0), (5_000, 30)],
            |e| {
                matches!(
                    e,
                    IndexError::TimeEntryPastEnd {
                        entry: 1,
                        end: 30,
                        ..
                    }
                )
            },
        ),
        (
            "timestamps going back",
            vec![(1_050, 15), (1_020, 6)],
            |e| matches!(e, IndexError::TimeEntryOutOfOrder { entry: 1, .. }),
        ),
    ];
    for (name, entries, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = closed_log(dir.path(), 10, one_segment_config(256));
        write_time_index(dir.path(), &entries);
        check_revalidated(dir.path(), &written, name, expected);
    }
}

/// Opens the cleanly closed one-segment log in `dir` whose index was damaged:
/// the segment must be distrusted for the `expected` reason, re-validated with
/// nothing lost, and its rebuilt indexes trusted by the next open.
fn check_revalidated(
    dir: &Path,
    written: &[Vec<u8>],
    name: &str,
    expected: fn(&IndexError) -> bool,
) {
    let (mut log, report) = open(dir, one_segment_config(256));
    assert!(report.clean, "{name}");
    match report.distrusted.as_slice() {
        [Corruption::Index { reason, .. }] if expected(reason) => {}
        other => panic!("{name}: distrusted {other:?}"),
    }
    assert_eq!(report.segments_recovered, 1, "{name}");
    assert_eq!(report.truncated_at, None, "{name}");
    assert_eq!(read_all(&log), written, "{name}");
    assert_eq!(
        log.offset_for_timestamp(1_050).expect("lookup"),
        Some((15, 1_050)),
        "{name}"
    );
    assert_eq!(log.max_timestamp(), Some((1_092, 29)), "{name}");
    let appended = log
        .append_as_leader(&mut batch(3, 8, 2_000), 0, 0)
        .expect("append");
    assert_eq!(appended.base_offset, 30, "{name}");
    log.close().expect("close");
    let (log, report) = open(dir, one_segment_config(256));
    assert_eq!(
        (report.distrusted.len(), report.segments_recovered),
        (0, 0),
        "{name}: the rebuilt index is trusted"
    );
    assert_eq!(log.log_end_offset(), 33, "{name}");
}

#[test]
fn trusted_batch_offsets_at_the_extremes_are_cut() {
    type Case = (usize, i64, fn(&BatchError) -> bool);
    // (which of 4 batches gets which base offset, why it is refused). No index
    // entries, so the open walks every header.
    let out_of_range = |e: &BatchError| matches!(e, BatchError::OffsetOutOfRange { .. });
    let below = |e: &BatchError| matches!(e, BatchError::OffsetBelow { .. });
    let cases: [Case; 9] = [
        (0, i64::MAX - 1, out_of_range), // fuzz finding: next append overflowed
        (0, i64::MIN, below),            // fuzz finding: log end far below zero
        (3, i64::MAX, out_of_range),
        (3, i64::MAX - 1, out_of_range),
        (3, OFFSET_LIMIT - 1, out_of_range),
        (3, 1 << 32, out_of_range), // past the segment's relative (u32) range
        (3, i64::MIN, below),
        (3, -1, below),
        (3, 3, below), // overlaps the batch before
    ];
    for (victim, base_offset, expected) in cases {
        let case = format!("batch {victim} at offset {base_offset}");
        let dir = tempfile::tempdir().expect("tempdir");
        let written = closed_log(dir.path(), 4, one_segment_config(1 << 20));
        let path = dir.path().join(segment::file_name(0, "log"));
        let mut bytes = std::fs::read(&path).expect("read segment");
        let at = positions(&written)[victim];
        batch::stamp_base_offset(&mut bytes[at as usize..], base_offset);
        std::fs::write(&path, &bytes).expect("write segment");

        let (mut log, report) = open(dir.path(), one_segment_config(1 << 20));
        match report.distrusted.as_slice() {
            [
                Corruption::Batch {
                    position, reason, ..
                },
            ] if *position == at && expected(reason) => {}
            other => panic!("{case}: distrusted {other:?}"),
        }
        assert!(
            report
                .truncated_at
                .as_ref()
                .is_some_and(|(_, position, _)| *position == at),
            "{case}: {report:?}"
        );
        let kept = 3 * victim as i64;
        assert_eq!(read_all(&log), written[..victim], "{case}");
        assert_eq!(log.log_end_offset(), kept, "{case}");
        let appended = log
            .append_as_leader(&mut batch(3, 8, 2_000), 0, 0)
            .expect("append");
        assert_eq!(appended.base_offset, kept, "{case}");
        drop(log);
        let (log, _) = open(dir.path(), one_segment_config(1 << 20));
        assert_eq!(log.log_end_offset(), kept + 3, "{case}");
    }
}

#[test]
fn trusted_batch_reaching_into_the_next_segment_is_cut_with_what_follows() {
    let config = LogConfig {
        index_interval_bytes: 1 << 20,
        ..small_config()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let written = closed_log(dir.path(), 30, config.clone());
    let mut bases: Vec<i64> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    bases.sort_unstable();
    assert!(bases.len() > 2, "{bases:?}");
    // The last batch of the first segment claims offsets of the second.
    let path = dir.path().join(segment::file_name(0, "log"));
    let mut bytes = std::fs::read(&path).expect("read segment");
    let victim = bases[1] as usize / 3 - 1;
    let at = positions(&written)[victim] as usize;
    batch::stamp_base_offset(&mut bytes[at..], bases[1]);
    std::fs::write(&path, &bytes).expect("write segment");

    let (log, report) = open(dir.path(), config);
    assert!(
        matches!(
            report.distrusted.as_slice(),
            [Corruption::Batch { reason: BatchError::OffsetOutOfRange { max, .. }, .. }]
                if *max == bases[1] - 1
        ),
        "{report:?}"
    );
    assert_eq!(report.segments_deleted.len(), bases.len() - 1);
    assert_eq!(read_all(&log), written[..victim]);
    assert_eq!(log.log_end_offset(), bases[1] - 3);
}

#[test]
fn segment_names_outside_the_offset_range_are_not_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = closed_log(dir.path(), 2, one_segment_config(256));
    for name in [
        "09223372036854775807.log",
        "04611686018427387905.log",
        "-0000000000000000003.log",
        "+0000000000000000003.log",
    ] {
        std::fs::write(dir.path().join(name), &written[0]).expect("write");
    }
    let (mut log, report) = open(dir.path(), one_segment_config(256));
    assert_eq!(report.distrusted, vec![]);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (0, 6, 1)
    );
    let appended = log
        .append_as_leader(&mut batch(3, 8, 2_000), 0, 0)
        .expect("append");
    assert_eq!(appended.base_offset, 6);
}

#[test]
fn appends_stop_at_the_offset_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), one_segment_config(256));
    log.truncate_fully_and_start_at(OFFSET_LIMIT - 3)
        .expect("start near the limit");
    let mut last_fit = batch(3, 8, 0);
    batch::stamp_base_offset(&mut last_fit, OFFSET_LIMIT - 3);
    log.append_as_follower(&last_fit, 0)
        .expect("offsets up to the limit");
    assert_eq!(log.log_end_offset(), OFFSET_LIMIT);
    for base_offset in [OFFSET_LIMIT, i64::MAX - 1, i64::MAX] {
        let mut past = batch(1, 8, 0);
        batch::stamp_base_offset(&mut past, base_offset);
        assert!(
            matches!(
                log.append_as_follower(&past, 0),
                Err(AppendError::InvalidBatch {
                    reason: BatchError::OffsetOutOfRange { .. },
                    ..
                })
            ),
            "follower batch at {base_offset}"
        );
    }
    assert!(matches!(
        log.append_as_leader(&mut batch(1, 8, 0), 0, 0),
        Err(AppendError::InvalidBatch {
            reason: BatchError::OffsetOutOfRange { .. },
            ..
        })
    ));
    assert_eq!(log.log_end_offset(), OFFSET_LIMIT);
    assert_eq!(read_all(&log), vec![last_fit]);
}

/// Per-segment data sizes (sealed segments are trimmed; the active one is the remainder).
fn segment_layout(dir: &Path, log: &Log) -> Vec<(std::path::PathBuf, u64)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    let mut layout: Vec<_> = files
        .iter()
        .map(|p| (p.clone(), std::fs::metadata(p).expect("meta").len()))
        .collect();
    let sealed: u64 = layout[..layout.len() - 1].iter().map(|(_, len)| len).sum();
    if let Some(last) = layout.last_mut() {
        last.1 = log.size_bytes() - sealed;
    }
    layout
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn recovery_after_cutting_the_tail_keeps_exactly_the_whole_batches(
        sizes in prop::collection::vec((1usize..5, 1usize..400), 1..40),
        cut_fraction in 0.0f64..1.0,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path(), small_config());
        let mut written = Vec::new();
        for (i, (count, size)) in sizes.iter().enumerate() {
            let mut b = batch(*count, *size, i as i64);
            log.append_as_leader(&mut b, 0, 0).expect("append");
            written.push(b);
        }
        let layout = segment_layout(dir.path(), &log);
        drop(log);
        let (last_path, last_len) = layout.last().expect("segment").clone();
        let keep = ((last_len as f64) * (1.0 - cut_fraction)) as u64;
        std::fs::OpenOptions::new().write(true).open(&last_path).expect("open").set_len(keep).expect("cut");

        let before_last: u64 = layout[..layout.len() - 1].iter().map(|(_, l)| l).sum();
        let mut expected = Vec::new();
        let mut pos = 0u64;
        for b in &written {
            if pos + b.len() as u64 > before_last + keep { break; }
            pos += b.len() as u64;
            expected.push(b.clone());
        }
        let (log, report) = open(dir.path(), small_config());
        prop_assert_eq!(read_all(&log), expected);
        prop_assert!(report.truncated_at.is_none() || report.truncated_bytes > 0);
        let next = written.iter().take(read_all(&log).len()).map(|b| BatchHeader::parse(b).expect("h").records_count as i64).sum::<i64>();
        prop_assert_eq!(log.log_end_offset(), next);
    }

    #[test]
    fn recovery_after_flipping_a_byte_keeps_exactly_the_batches_before_it(
        sizes in prop::collection::vec((1usize..5, 1usize..400), 1..40),
        at_fraction in 0.0f64..1.0,
        flip in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path(), small_config());
        let mut written = Vec::new();
        for (i, (count, size)) in sizes.iter().enumerate() {
            let mut b = batch(*count, *size, i as i64);
            log.append_as_leader(&mut b, 0, 0).expect("append");
            written.push(b);
        }
        let layout = segment_layout(dir.path(), &log);
        drop(log);
        let total: u64 = written.iter().map(|b| b.len() as u64).sum();
        let mut global = ((total as f64) * at_fraction) as u64;
        // Find the batch and the in-batch position; skip the two fields the CRC
        // does not cover by design (base offset, leader epoch), as Kafka does.
        let (mut victim, mut start) = (0usize, 0u64);
        while start + written[victim].len() as u64 <= global { start += written[victim].len() as u64; victim += 1; }
        let inner = global - start;
        if inner < 8 || (12..16).contains(&inner) { global = start + 16; }
        // Map the global position to a segment file.
        let mut seg_start = 0u64;
        for (path, len) in &layout {
            if global < seg_start + len {
                let mut bytes = std::fs::read(path).expect("read");
                bytes[(global - seg_start) as usize] ^= flip;
                std::fs::write(path, &bytes).expect("write");
                break;
            }
            seg_start += len;
        }
        let (log, report) = open(dir.path(), small_config());
        prop_assert_eq!(read_all(&log), written[..victim].to_vec());
        prop_assert!(report.truncated_at.is_some());
    }

    /// Index entries that ascend but may point inside batches or name the wrong
    /// offsets: only the last one is checked against the data on a trusted open,
    /// so the log opens either way, and reads of what it trusted fail as
    /// corruption (never panic) where an entry is wrong.
    #[test]
    fn trusted_segment_with_an_ascending_index_opens_and_reads_never_panic(
        picks in prop::collection::btree_map(1usize..10, (0u32..2, prop_oneof![3 => Just(0u32), 1 => 1u32..400]), 1..8),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = closed_log(dir.path(), 10, one_segment_config(256));
        let at = positions(&written);
        let entries: Vec<(u32, u32)> = picks
            .iter()
            .map(|(&batch, &(off, shift))| (3 * batch as u32 + off, at[batch] as u32 + shift))
            .collect();
        let exact = picks.values().all(|&p| p == (0, 0));
        write_offset_index(dir.path(), &entries);
        let (log, report) = open(dir.path(), one_segment_config(256));
        if exact || !report.distrusted.is_empty() {
            prop_assert_eq!(read_all(&log), written);
        }
        let leo = log.log_end_offset();
        prop_assert_eq!(leo, 30);
        for offset in 0..=leo {
            for max_offset in offset..=leo + 1 {
                match log.read(offset, 1 << 20, max_offset, true) {
                    Ok(_) | Err(ReadError::Corruption { .. }) => {}
                    Err(e) => prop_assert!(false, "read {offset} up to {max_offset}: {e}"),
                }
            }
            match log.for_each_batch(offset, |_| {}) {
                Ok(()) | Err(ReadError::Corruption { .. }) => {}
                Err(e) => prop_assert!(false, "walk from {offset}: {e}"),
            }
        }
    }
}

/// Producer-state rebuild's view: every header from the log start.
fn walk_headers(log: &Log) -> Result<Vec<(i64, i64)>, ReadError> {
    let mut seen = Vec::new();
    log.for_each_batch(log.log_start_offset(), |h| {
        seen.push((h.base_offset, h.last_offset()))
    })?;
    Ok(seen)
}

#[test]
fn garbage_between_index_entries_of_a_trusted_segment_is_cut_on_open() {
    // Opening trusts what lies between a clean segment's first batch and its
    // last index entry; the header walk finds the damage there, and the log is
    // re-validated from that segment and cut at the damaged batch.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 1000,
        ..LogConfig::default()
    };
    let written = closed_log(dir.path(), 30, config.clone());
    let (log, _) = open(dir.path(), config.clone());
    let bases: Vec<i64> = log.segments.keys().copied().collect();
    assert!(bases.len() >= 3, "several segments: {bases:?}");
    drop(log);
    // A clean close again, then garbage over the third batch of the second segment.
    let (mut log, _) = open(dir.path(), config.clone());
    log.close().expect("close");
    let second = dir.path().join(segment::file_name(bases[1], "log"));
    let per_segment = (bases[1] - bases[0]) as usize / 3;
    let damaged_at: u64 = written[per_segment..per_segment + 2]
        .iter()
        .map(|b| b.len() as u64)
        .sum();
    let mut bytes = std::fs::read(&second).expect("read segment");
    bytes[damaged_at as usize..damaged_at as usize + 40].fill(0x5a);
    std::fs::write(&second, bytes).expect("write segment");
    // The checks made on open alone do not see it (a copy, opened plainly).
    let copy = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, copy.path().join(path.file_name().expect("name"))).expect("copy");
    }
    let (_, plain) = open(copy.path(), config.clone());
    assert!(plain.clean && plain.distrusted.is_empty(), "{plain:?}");

    let (log, report, seen) =
        Log::open_and_walk(Arc::new(StdFs), dir.path(), config, 0, walk_headers)
            .expect("the log opens");
    let end = bases[1] + 6;
    assert_eq!(log.log_end_offset(), end, "cut at the damaged batch");
    assert_eq!(
        seen,
        (0..end / 3).map(|i| (3 * i, 3 * i + 2)).collect::<Vec<_>>(),
        "the walk sees exactly the batches before the damage"
    );
    assert!(report.clean);
    match report.distrusted.as_slice() {
        [Corruption::Batch { path, position, .. }] => {
            assert_eq!((path, *position), (&second, damaged_at));
        }
        other => panic!("distrusted {other:?}"),
    }
    let (path, position, _) = report.truncated_at.clone().expect("a cut");
    assert_eq!((path, position), (second, damaged_at));
    assert_eq!(report.segments_deleted.len(), bases.len() - 2);
    assert_eq!(read_all(&log), written[..(end / 3) as usize]);
}
