//! Storage-engine throughput: append (1 KiB records in 16 KiB batches) with one
//! fsync at the end, with an fsync per batch, and with group commit under
//! concurrent waiters (one or five batches in flight each); and sequential reads. `broker/benches/storage_report.py`
//! runs this next to `dd` and writes the figures to BENCHMARKS.md.
//! `SKIFF_BENCH_PREALLOCATE=0` benchmarks segments without preallocation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skiff_broker::log::batch::testing::batch;
use skiff_broker::log::flush::GroupCommit;
use skiff_broker::log::{Log, LogConfig, StdFs};

const RECORD: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;

fn bench_dir() -> tempfile::TempDir {
    // Next to the build output rather than in /tmp, which may be tmpfs.
    let base =
        std::env::var("SKIFF_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_owned());
    std::fs::create_dir_all(&base).expect("bench dir");
    tempfile::tempdir_in(base).expect("tempdir")
}

fn fresh_log(dir: &std::path::Path) -> Log {
    let prealloc = std::env::var("SKIFF_BENCH_PREALLOCATE").map_or(true, |v| v != "0");
    Log::open(
        Arc::new(StdFs),
        dir,
        LogConfig {
            preallocate: prealloc,
            ..LogConfig::default()
        },
        0,
    )
    .expect("open")
    .0
}

/// Appends `bytes` worth of batches; `fsync_every` batches (0: only at the end).
fn append(total: usize, fsync_every: usize) -> Duration {
    let dir = bench_dir();
    let mut log = fresh_log(dir.path());
    // One buffer appended over and over, as a produce request's bytes are
    // appended where they were received: the append re-stamps the base offset
    // each time, and the CRC does not cover it.
    let mut buf = batch(RECORDS_PER_BATCH, RECORD, 0);
    let batches = total / buf.len();
    let start = Instant::now();
    for i in 0..batches {
        log.append_as_leader(&mut buf, 0, 0).expect("append");
        if fsync_every > 0 && (i + 1) % fsync_every == 0 {
            log.flush().expect("flush");
        }
    }
    log.flush().expect("flush");
    start.elapsed()
}

/// `producers` tasks append and wait until their batches are durable, as
/// acks=all requests do, each with up to `in_flight` batches awaiting
/// durability (a Kafka producer keeps up to 5 requests in flight per
/// connection); the group-commit task decides when to fsync.
fn group_commit(total: usize, producers: usize, in_flight: usize) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = bench_dir();
    let log = Arc::new(Mutex::new(fresh_log(dir.path())));
    let template = batch(RECORDS_PER_BATCH, RECORD, 0);
    let per_producer = total / template.len() / producers;
    rt.block_on(async {
        let gc = GroupCommit::spawn(log.clone(), 0, None);
        let start = Instant::now();
        let tasks: Vec<_> = (0..producers)
            .map(|_| {
                let (log, gc, template) = (log.clone(), gc.clone(), template.clone());
                tokio::spawn(async move {
                    let mut buf = template;
                    let mut waiting = std::collections::VecDeque::with_capacity(in_flight);
                    for _ in 0..per_producer {
                        if waiting.len() == in_flight
                            && let Some(end) = waiting.pop_front()
                        {
                            gc.wait_durable(end).await.expect("durable");
                        }
                        let end = log
                            .lock()
                            .expect("lock")
                            .append_as_leader(&mut buf, 0, 0)
                            .expect("append")
                            .last_offset
                            + 1;
                        gc.request(end);
                        waiting.push_back(end);
                    }
                    if let Some(end) = waiting.pop_back() {
                        gc.wait_durable(end).await.expect("durable");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("producer");
        }
        let elapsed = start.elapsed();
        gc.stop();
        elapsed
    })
}

fn storage(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    const BIG: usize = 256 << 20;
    g.throughput(Throughput::Bytes(BIG as u64));
    g.bench_function("fsync_at_end", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| append(BIG, 0)).sum())
    });
    const GROUP: usize = 64 << 20;
    g.throughput(Throughput::Bytes(GROUP as u64));
    g.bench_function("group_commit_16_producers", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| group_commit(GROUP, 16, 1)).sum())
    });
    g.bench_function("group_commit_16_producers_5_in_flight", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| group_commit(GROUP, 16, 5)).sum())
    });
    const SMALL: usize = 16 << 20;
    g.throughput(Throughput::Bytes(SMALL as u64));
    g.bench_function("fsync_per_batch", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| append(SMALL, 1)).sum())
    });
    g.finish();

    let mut g = c.benchmark_group("read");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(BIG as u64));
    // Written on first use only, so that running another case alone
    // (`-- --exact append/...`) does not write it.
    let mut written: Option<(tempfile::TempDir, Log)> = None;
    let mut out = Vec::with_capacity(1 << 20);
    g.bench_function("sequential_1MiB_fetches", |b| {
        let (_, log) = written.get_or_insert_with(|| {
            let dir = bench_dir();
            let mut log = fresh_log(dir.path());
            let mut buf = batch(RECORDS_PER_BATCH, RECORD, 0);
            while log.size_bytes() < BIG as u64 {
                log.append_as_leader(&mut buf, 0, 0).expect("append");
            }
            log.flush().expect("flush");
            (dir, log)
        });
        b.iter(|| {
            let mut offset = 0;
            while let Some(slice) = log.read(offset, 1 << 20, i64::MAX, true).expect("read") {
                out.clear();
                slice.read_into(&mut out).expect("bytes");
                // Continue after the last whole batch in the slice.
                let mut pos = 0;
                while let Ok(h) = skiff_broker::log::BatchHeader::parse(&out[pos..]) {
                    let size = h.size().expect("size");
                    if pos + size > out.len() {
                        break;
                    }
                    offset = h.last_offset() + 1;
                    pos += size;
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, storage);
criterion_main!(benches);
