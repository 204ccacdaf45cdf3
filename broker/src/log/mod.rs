//! The per-partition log: an append-only sequence of Kafka v2 record batches,
//! stored byte-for-byte as received in segment files, with sparse indexes, a
//! leader-epoch checkpoint, retention, truncation, recovery and group-committed
//! fsync.
//!
//! Owns: offsets (assigning them on the leader, checking them on followers),
//! segment rolling, what is on disk and what is durable. Must not: know about
//! high watermarks, ISR or clients; the partition above it keeps those and tells
//! the log how far retention may go.

pub mod batch;
pub mod config;
pub mod epoch;
pub mod error;
pub mod flush;
pub mod fs;
pub mod index;
pub mod segment;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

pub use batch::{BatchError, BatchHeader};
pub use config::LogConfig;
pub use epoch::{EpochCache, EpochEntry};
pub use error::{AppendError, Corruption, IndexError, MaintenanceError, OpenError, ReadError};
pub use fs::{FileSystem, SegmentFile, StdFs};
pub use segment::LogSlice;

use segment::{Segment, SegmentParams};

/// Marker written by a clean close; its absence at open means recovery.
pub const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
/// Offset below which every segment is known to be fully on disk.
pub const RECOVERY_POINT_FILE: &str = "recovery-point";
/// Every offset in a log is below this, and so is its log end offset (at most
/// equal). Offsets read from disk or sent by a leader at or above it are
/// corruption, so the sum of two offsets, or of an offset and a batch's delta,
/// can never overflow. No real log gets there (2^62 records).
pub const OFFSET_LIMIT: i64 = 1 << 62;

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Newest timestamp among the appended batches.
    pub max_timestamp: i64,
    /// Number of batches.
    pub batches: usize,
    /// Number of records.
    pub records: i64,
    /// Bytes appended.
    pub bytes: usize,
    /// Header of the first batch (producer id, epoch and sequences for idempotence).
    pub first_batch: BatchHeader,
    /// Whether `flush.messages` says an fsync is due now.
    pub flush_due: bool,
}

/// What opening a log found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Whether the previous close was clean (segments were trusted, unless
    /// they failed the checks on open: see `distrusted`).
    pub clean: bool,
    /// Segments re-validated batch by batch.
    pub segments_recovered: usize,
    /// Bytes cut at the first torn or corrupt batch (zero-filled preallocation not counted).
    pub truncated_bytes: u64,
    /// Where and why the cut happened.
    pub truncated_at: Option<(PathBuf, u64, BatchError)>,
    /// Whole segments deleted because they followed the cut.
    pub segments_deleted: Vec<PathBuf>,
    /// Segments that were to be trusted (cleanly closed, or below the recovery
    /// point) but failed the checks made on open, so were re-validated: why.
    pub distrusted: Vec<Corruption>,
}

/// What a flush must make durable; taken under the log's lock, synced outside
/// it, so appends continue while the disk works.
#[derive(Debug)]
pub struct FlushTicket {
    /// Every offset below this is durable once the ticket is synced.
    pub upto: i64,
    rolled: Vec<Arc<dyn SegmentFile>>,
    active: Arc<dyn SegmentFile>,
    dir: Option<PathBuf>,
    fs: Arc<dyn FileSystem>,
    recovery_point: i64,
}

impl FlushTicket {
    /// Performs the fsyncs (blocking): rolled segments whole, the active one's
    /// data, and the directory if segments were created.
    pub fn sync(&self) -> io::Result<()> {
        for f in &self.rolled {
            f.sync_all()?;
        }
        self.active.sync_data()?;
        if let Some(dir) = &self.dir {
            self.fs.sync_dir(dir)?;
        }
        Ok(())
    }
}

/// One partition's log.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    next_offset: i64,
    durable_offset: i64,
    recovery_point: i64,
    /// Segments rolled since the last flush, still to be fsynced.
    rolled_unflushed: Vec<Arc<dyn SegmentFile>>,
    dir_dirty: bool,
    records_since_flush: i64,
    epochs: EpochCache,
    offline: Option<String>,
}

impl Log {
    /// Opens the log like [`Log::open`], then walks every batch header from the
    /// log start through `walk` (which builds what it needs from them, such as
    /// producer state) and returns what it built.
    ///
    /// Opening checks a trusted segment (cleanly closed, or below the recovery
    /// point) only at its ends and index entries; the walk reads every header.
    /// If it meets a corrupt batch in a trusted segment, that segment and every
    /// later one are distrusted: the log is opened again with the recovery
    /// point at that segment, so it is re-validated batch by batch and cut at
    /// the corrupt batch exactly as after a crash, and the walk starts over.
    pub fn open_and_walk<T>(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        mut walk: impl FnMut(&Log) -> Result<T, ReadError>,
    ) -> Result<(Self, RecoveryReport, T), OpenError> {
        let (log, report) = Self::open(fs.clone(), dir, config.clone(), now_ms)?;
        let corrupt = match walk(&log) {
            Ok(built) => return Ok((log, report, built)),
            Err(e @ ReadError::Corruption { .. }) => e,
            Err(e) => {
                return Err(OpenError::Io {
                    path: dir.to_owned(),
                    op: "read batch headers",
                    source: io::Error::other(e.to_string()),
                });
            }
        };
        let ReadError::Corruption {
            path,
            position,
            reason,
        } = &corrupt
        else {
            unreachable!("matched above");
        };
        let Some(base) = log
            .segments
            .iter()
            .find(|(_, s)| s.path() == path.as_path())
            .map(|(b, _)| *b)
        else {
            return Err(OpenError::Io {
                path: path.clone(),
                op: "read batch headers",
                source: io::Error::other(corrupt.to_string()),
            });
        };
        warn!(segment = %path.display(), position, %reason, "log open: a trusted segment holds a corrupt batch; re-validating the log from it");
        // Dropped without `close`: no clean-shutdown marker, so the recovery
        // point written here decides what the next open trusts.
        drop(log);
        fs.write_atomic(&dir.join(RECOVERY_POINT_FILE), base.to_string().as_bytes())
            .and_then(|()| fs.sync_dir(dir))
            .map_err(|source| OpenError::Io {
                path: dir.join(RECOVERY_POINT_FILE),
                op: "write recovery point",
                source,
            })?;
        let (log, mut again) = Self::open(fs, dir, config, now_ms)?;
        again.clean = report.clean;
        again.distrusted.splice(
            0..0,
            report.distrusted.into_iter().chain([Corruption::Batch {
                path: path.clone(),
                position: *position,
                reason: reason.clone(),
            }]),
        );
        let built = walk(&log).map_err(|e| OpenError::Io {
            path: dir.to_owned(),
            op: "read batch headers after recovery",
            source: io::Error::other(e.to_string()),
        })?;
        Ok((log, again, built))
    }

    /// Opens the log in `dir` (creating it if empty), recovering from an unclean
    /// stop: segments after the last recovery point are re-validated and the log
    /// is cut at the first torn or corrupt batch.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<(Self, RecoveryReport), OpenError> {
        let io_err = |op: &'static str| {
            move |source: io::Error| OpenError::Io {
                path: dir.to_owned(),
                op,
                source,
            }
        };
        fs.create_dir_all(dir).map_err(io_err("create directory"))?;
        let mut bases = Vec::new();
        for path in fs.list(dir).map_err(io_err("list directory"))? {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let (stem, ext) = name.split_once('.').unwrap_or((&name, ""));
            match (stem.parse::<i64>(), ext) {
                // Only the names the log itself writes: twenty digits, no sign.
                (Ok(base), "log")
                    if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    if base <= OFFSET_LIMIT {
                        bases.push(base);
                    } else {
                        warn!(file = %path.display(), limit = OFFSET_LIMIT, "log open: ignoring a segment whose base offset is past the offset limit");
                    }
                }
                (_, "tmp") => fs.remove(&path).map_err(io_err("remove temporary file"))?,
                _ => {}
            }
        }
        bases.sort_unstable();
        // Index files without a log are leftovers of a deletion cut short.
        for path in fs.list(dir).map_err(io_err("list directory"))? {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if let Some((stem, "index" | "timeindex")) = name.split_once('.')
                && stem
                    .parse::<i64>()
                    .map_or(true, |b| bases.binary_search(&b).is_err())
            {
                fs.remove(&path).map_err(io_err("remove orphan index"))?;
            }
        }

        let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = fs.exists(&clean_marker);
        let recovery_point = if clean {
            i64::MAX
        } else {
            fs.read(&dir.join(RECOVERY_POINT_FILE))
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(0)
        };
        let mut epochs = EpochCache::load(fs.as_ref(), dir);
        let params = segment_params(&config);
        let mut report = RecoveryReport {
            clean,
            ..Default::default()
        };
        let mut segments = BTreeMap::new();
        let mut expected = 0i64;
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let trusted = next_base.is_some_and(|n| n <= recovery_point) || clean;
            let opened = if trusted {
                let checked =
                    Segment::open_trusted(fs.as_ref(), dir, base, params, expected, next_base)
                        .map_err(|source| OpenError::Io {
                            path: dir.join(segment::file_name(base, "log")),
                            op: "open segment",
                            source,
                        })?;
                match checked {
                    Ok(seg) => Some(seg),
                    Err(corruption) => {
                        warn!(%corruption, "log open: a segment that was closed cleanly contradicts itself; re-validating it");
                        report.distrusted.push(corruption);
                        None
                    }
                }
            } else {
                None
            };
            let seg = match opened {
                Some(seg) => seg,
                None => {
                    let (seg, outcome) = Segment::recover(
                        fs.as_ref(),
                        dir,
                        base,
                        params,
                        expected,
                        next_base,
                        &mut epochs,
                    )
                    .map_err(io_err("recover segment"))?;
                    report.segments_recovered += 1;
                    // A zero-filled tail is preallocated space never written; on the
                    // last segment it is routine, on an earlier one it is a hole.
                    let is_last = i + 1 == bases.len();
                    let cut = match (&outcome.reason, outcome.truncated_bytes) {
                        (_, 0) => None,
                        (Some(reason), _) => Some(reason.clone()),
                        (None, _) if !is_last => Some(BatchError::ZeroFilled),
                        (None, _) => None,
                    };
                    if let Some(reason) = cut {
                        warn!(
                            segment = %seg.path().display(),
                            position = outcome.valid_bytes,
                            bytes_cut = outcome.truncated_bytes,
                            %reason,
                            "log recovery: cutting the log at a torn or corrupt batch"
                        );
                        report.truncated_bytes += outcome.truncated_bytes;
                        report.truncated_at =
                            Some((seg.path().to_owned(), outcome.valid_bytes, reason));
                        seg.file()
                            .sync_all()
                            .map_err(io_err("sync recovered segment"))?;
                        segments.insert(base, seg);
                        // Everything after the cut is after a hole in the log.
                        for &later in &bases[i + 1..] {
                            for ext in ["log", "index", "timeindex"] {
                                let p = dir.join(segment::file_name(later, ext));
                                fs.remove(&p).map_err(io_err("delete segment after cut"))?;
                                if ext == "log" {
                                    warn!(segment = %p.display(), "log recovery: deleting segment after the cut");
                                    report.segments_deleted.push(p);
                                }
                            }
                        }
                        break;
                    }
                    seg.file()
                        .sync_all()
                        .map_err(io_err("sync recovered segment"))?;
                    seg
                }
            };
            expected = seg.next_offset();
            segments.insert(base, seg);
        }
        // An empty segment that is not the last cannot come from appends (a roll
        // follows an append): it is left by a crash or damage, and would leave
        // offsets below the next segment that no read can reach. Drop it.
        let last = segments.keys().next_back().copied();
        let empties: Vec<i64> = segments
            .iter()
            .filter(|(b, s)| Some(**b) != last && s.size() == 0)
            .map(|(b, _)| *b)
            .collect();
        for base in empties {
            if let Some(seg) = segments.remove(&base) {
                let path = seg.path().to_owned();
                warn!(segment = %path.display(), "log recovery: deleting an empty segment that is not the last");
                seg.delete(fs.as_ref())
                    .map_err(io_err("delete empty segment"))?;
                report.segments_deleted.push(path);
            }
        }
        if segments.is_empty() {
            let seg = Segment::create(fs.as_ref(), dir, 0, params, now_ms)
                .map_err(io_err("create segment"))?;
            segments.insert(0, seg);
        }
        let (log_start, active) = {
            let first = segments.keys().next().copied().unwrap_or(0);
            let active = segments
                .values()
                .next_back()
                .map(|s| (s.next_offset(), s.file().clone()));
            (first, active)
        };
        let next_offset = active.as_ref().map_or(0, |a| a.0);
        if let Some(seg) = segments.values().next_back() {
            seg.reactivate()
                .map_err(io_err("preallocate active segment"))?;
        }
        let mut epochs_changed = epochs.truncate_from_end(next_offset);
        epochs_changed |= epochs.truncate_from_start(log_start);
        if epochs_changed || !clean {
            epochs
                .persist(fs.as_ref())
                .map_err(io_err("write leader-epoch checkpoint"))?;
        }
        fs.write_atomic(
            &dir.join(RECOVERY_POINT_FILE),
            next_offset.to_string().as_bytes(),
        )
        .map_err(io_err("write recovery point"))?;
        fs.remove(&clean_marker)
            .map_err(io_err("remove clean-shutdown marker"))?;
        fs.sync_dir(dir).map_err(io_err("sync directory"))?;
        // A brand-new log has nothing to recover; only report real recoveries.
        if !clean && !bases.is_empty() {
            info!(dir = %dir.display(), segments = report.segments_recovered, log_end_offset = next_offset, "log recovered after unclean shutdown");
        }
        let log = Self {
            dir: dir.to_owned(),
            fs,
            config,
            segments,
            next_offset,
            durable_offset: next_offset,
            recovery_point: next_offset,
            rolled_unflushed: Vec::new(),
            dir_dirty: false,
            records_since_flush: 0,
            epochs,
            offline: None,
        };
        Ok((log, report))
    }

    /// Directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's settings.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the settings (topic config change); applies from the next segment on.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.segments.keys().next().copied().unwrap_or(0)
    }

    /// Offset the next appended record gets (log end offset, LEO).
    pub fn log_end_offset(&self) -> i64 {
        self.next_offset
    }

    /// Every offset below this is fsynced.
    pub fn durable_offset(&self) -> i64 {
        self.durable_offset
    }

    /// Bytes of batches across all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The leader-epoch checkpoint.
    pub fn epochs(&self) -> &EpochCache {
        &self.epochs
    }

    /// Why the log is offline, if it is.
    pub fn offline_reason(&self) -> Option<&str> {
        self.offline.as_deref()
    }

    fn check_online(&self) -> Result<(), AppendError> {
        match &self.offline {
            Some(reason) => Err(AppendError::Offline {
                dir: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn take_offline(&mut self, reason: String) {
        warn!(dir = %self.dir.display(), %reason, "log taken offline");
        self.offline = Some(reason);
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Appends a producer's batches as partition leader: validates each (magic,
    /// length, CRC, `max.message.bytes`), assigns offsets from the log end,
    /// stamps `leader_epoch`, and writes the bytes unchanged otherwise.
    pub fn append_as_leader(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.check_online()?;
        let summary = self.validate(batches, true)?;
        let base_offset = self.next_offset;
        let mut pos = 0usize;
        let mut offset = base_offset;
        while pos < batches.len() {
            let h = BatchHeader::parse(&batches[pos..]).map_err(|reason| {
                AppendError::InvalidBatch {
                    position: pos,
                    reason,
                }
            })?;
            // `offset` is at most OFFSET_LIMIT and the delta an i32: no overflow.
            let last = offset + h.last_offset_delta as i64;
            if last >= OFFSET_LIMIT {
                return Err(AppendError::InvalidBatch {
                    position: pos,
                    reason: BatchError::OffsetOutOfRange {
                        base_offset: offset,
                        last_offset: last,
                        max: OFFSET_LIMIT - 1,
                    },
                });
            }
            batch::stamp_base_offset(&mut batches[pos..], offset);
            batch::stamp_leader_epoch(&mut batches[pos..], leader_epoch);
            offset = last + 1;
            pos += h.size().map_err(|reason| AppendError::InvalidBatch {
                position: pos,
                reason,
            })?;
        }
        if self.epochs.assign(leader_epoch, base_offset) {
            self.persist_epochs()?;
        }
        let mut first_batch = summary.first;
        first_batch.base_offset = base_offset;
        first_batch.partition_leader_epoch = leader_epoch;
        self.write(
            batches,
            base_offset,
            offset - 1,
            summary,
            first_batch,
            now_ms,
        )
    }

    /// Appends batches replicated from the leader: offsets and epochs are kept as
    /// the leader assigned them and must continue this log.
    pub fn append_as_follower(
        &mut self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.check_online()?;
        let summary = self.validate(batches, false)?;
        let first = summary.first;
        if first.base_offset < self.next_offset {
            return Err(AppendError::OffsetBehindLogEnd {
                base_offset: first.base_offset,
                log_end_offset: self.next_offset,
            });
        }
        let mut changed = false;
        let mut pos = 0usize;
        let mut expected = first.base_offset;
        let mut last = first.last_offset();
        while pos < batches.len() {
            let h = BatchHeader::parse(&batches[pos..]).map_err(|reason| {
                AppendError::InvalidBatch {
                    position: pos,
                    reason,
                }
            })?;
            let reason = if h.base_offset < expected {
                Some(BatchError::OffsetBelow {
                    base_offset: h.base_offset,
                    expected,
                })
            } else if h.last_offset() >= OFFSET_LIMIT {
                Some(BatchError::OffsetOutOfRange {
                    base_offset: h.base_offset,
                    last_offset: h.last_offset(),
                    max: OFFSET_LIMIT - 1,
                })
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(AppendError::InvalidBatch {
                    position: pos,
                    reason,
                });
            }
            changed |= self.epochs.assign(h.partition_leader_epoch, h.base_offset);
            expected = h.last_offset().saturating_add(1);
            last = h.last_offset();
            pos += h.size().map_err(|reason| AppendError::InvalidBatch {
                position: pos,
                reason,
            })?;
        }
        if changed {
            self.persist_epochs()?;
        }
        self.write(batches, first.base_offset, last, summary, first, now_ms)
    }

    /// Records that `leader_epoch` starts at the log end (a replica becoming
    /// leader, before it appends anything), so followers of the new epoch find
    /// where the previous one ended. Older epochs are ignored.
    pub fn assign_leader_epoch(&mut self, leader_epoch: i32) -> Result<(), AppendError> {
        self.check_online()?;
        if self.epochs.assign(leader_epoch, self.next_offset) {
            self.persist_epochs()?;
        }
        Ok(())
    }

    fn persist_epochs(&mut self) -> Result<(), AppendError> {
        self.epochs
            .persist(self.fs.as_ref())
            .map_err(|source| AppendError::Io {
                path: self.dir.join(epoch::CHECKPOINT_FILE),
                op: "write leader-epoch checkpoint",
                source,
            })
    }

    fn validate(&self, batches: &[u8], strict_count: bool) -> Result<Summary, AppendError> {
        let mut summary: Option<Summary> = None;
        for item in batch::Batches::new(batches, strict_count) {
            let (position, h) =
                item.map_err(|(position, reason)| AppendError::InvalidBatch { position, reason })?;
            let size = h
                .size()
                .map_err(|reason| AppendError::InvalidBatch { position, reason })?;
            if size > self.config.max_message_bytes {
                return Err(AppendError::BatchTooLarge {
                    size,
                    max: self.config.max_message_bytes,
                });
            }
            let s = summary.get_or_insert(Summary {
                first: h,
                batches: 0,
                records: 0,
                max_timestamp: -1,
            });
            s.batches += 1;
            s.records += h.records_count.max(0) as i64;
            s.max_timestamp = s.max_timestamp.max(h.max_timestamp);
        }
        summary.ok_or(AppendError::Empty)
    }

    fn write(
        &mut self,
        batches: &[u8],
        base_offset: i64,
        last_offset: i64,
        summary: Summary,
        first_batch: BatchHeader,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let must_roll = self.active().must_roll_for(
            batches.len() as u64,
            last_offset,
            self.config.segment_bytes,
            self.config.segment_ms,
            now_ms,
        ) || base_offset - self.active().base_offset() > u32::MAX as i64;
        if must_roll {
            self.roll(base_offset, now_ms)?;
        }
        let fs = self.fs.clone();
        let seg = self.active_mut();
        if let Err((source, undo)) = seg.append(fs.as_ref(), batches, now_ms) {
            let path = seg.path().to_owned();
            if let Err(undo_err) = undo {
                self.take_offline(format!(
                    "append to {} failed ({source}) and could not be undone: {undo_err}",
                    path.display()
                ));
            }
            return Err(AppendError::Io {
                path,
                op: "append",
                source,
            });
        }
        self.next_offset = last_offset + 1;
        self.records_since_flush += summary.records;
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp: summary.max_timestamp,
            batches: summary.batches,
            records: summary.records,
            bytes: batches.len(),
            first_batch,
            flush_due: self.records_since_flush >= self.config.flush_messages,
        })
    }

    fn roll(&mut self, base_offset: i64, now_ms: i64) -> Result<(), AppendError> {
        let fs = self.fs.clone();
        let params = segment_params(&self.config);
        let dir = self.dir.clone();
        let io = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source: io::Error| AppendError::Io { path, op, source }
        };
        let new_path = dir.join(segment::file_name(base_offset, "log"));
        // Reusing an existing segment's name would truncate its files, whose
        // index is memory-mapped: refuse instead (a log whose offsets do not ascend).
        if base_offset <= self.active().base_offset() {
            let source = io::Error::other(format!(
                "new segment base {base_offset} is not after the active segment's {}",
                self.active().base_offset()
            ));
            return Err(io("roll segment", &new_path)(source));
        }
        let seg = Segment::create(fs.as_ref(), &dir, base_offset, params, now_ms)
            .map_err(io("create segment", &new_path))?;
        let old = self.active_mut();
        let old_path = old.path().to_owned();
        if let Err(e) = old.seal(fs.as_ref()) {
            let _ = seg.delete(fs.as_ref());
            return Err(io("seal segment", &old_path)(e));
        }
        let old_file = old.file().clone();
        self.rolled_unflushed.push(old_file);
        self.dir_dirty = true;
        self.segments.insert(base_offset, seg);
        info!(dir = %self.dir.display(), base_offset, "rolled new segment");
        Ok(())
    }

    /// Reads up to `max_bytes` of whole batches starting with the one holding
    /// `offset`, stopping before `max_offset` (the high watermark for consumers,
    /// the log end for followers). `None` when there is nothing to read yet.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Option<LogSlice>, ReadError> {
        let start = self.log_start_offset();
        if offset < start || offset > self.next_offset {
            return Err(ReadError::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                log_end_offset: self.next_offset,
            });
        }
        let max_offset = max_offset.min(self.next_offset);
        if offset >= max_offset {
            return Ok(None);
        }
        let first = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(start, |(b, _)| *b);
        for (_, seg) in self.segments.range(first..) {
            if seg.base_offset() >= max_offset {
                break;
            }
            if let Some(slice) = seg.read(offset, max_bytes, max_offset, min_one_batch)? {
                return Ok(Some(slice));
            }
        }
        Ok(None)
    }

    /// The first record with timestamp ≥ `timestamp`: `(offset, timestamp)`
    /// (ListOffsets by time), or `None` if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, ReadError> {
        for seg in self.segments.values() {
            if seg.max_timestamp() >= timestamp
                && let Some(found) = seg.find_by_timestamp(timestamp)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Newest timestamp in the log and the offset of its batch (ListOffsets MAX_TIMESTAMP).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.segments
            .values()
            .filter(|s| s.max_timestamp() >= 0)
            .max_by_key(|s| s.max_timestamp())
            .map(|s| (s.max_timestamp(), s.offset_of_max_timestamp()))
    }

    /// Calls `f` with the header of every batch from `offset` on (producer-state
    /// rebuild, tests).
    pub fn for_each_batch(
        &self,
        offset: i64,
        mut f: impl FnMut(&BatchHeader),
    ) -> Result<(), ReadError> {
        let first = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(self.log_start_offset(), |(b, _)| *b);
        for (_, seg) in self.segments.range(first..) {
            seg.for_each_batch(offset, &mut f)?;
        }
        Ok(())
    }

    /// Takes what the next fsync must cover, or `None` if everything is durable.
    pub fn prepare_flush(&mut self) -> Option<FlushTicket> {
        if self.offline.is_some()
            || (self.durable_offset >= self.next_offset
                && self.rolled_unflushed.is_empty()
                && !self.dir_dirty)
        {
            return None;
        }
        Some(FlushTicket {
            upto: self.next_offset,
            rolled: std::mem::take(&mut self.rolled_unflushed),
            active: self.active().file().clone(),
            dir: std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone()),
            fs: self.fs.clone(),
            recovery_point: self.active().base_offset(),
        })
    }

    /// Records the outcome of a synced ticket. A failed fsync takes the log
    /// offline: the kernel may have dropped the dirty pages, so retrying could
    /// report data durable that is not.
    pub fn complete_flush(
        &mut self,
        ticket: &FlushTicket,
        result: io::Result<()>,
    ) -> Result<(), MaintenanceError> {
        if let Err(e) = result {
            self.take_offline(format!("fsync failed: {e}"));
            return Err(MaintenanceError::Io {
                path: self.dir.clone(),
                op: "fsync",
                source: e,
            });
        }
        // A truncation may have happened while syncing; never claim beyond the log end.
        self.durable_offset = self.durable_offset.max(ticket.upto.min(self.next_offset));
        self.records_since_flush = 0;
        if ticket.recovery_point > self.recovery_point {
            self.recovery_point = ticket.recovery_point;
            self.fs
                .write_atomic(
                    &self.dir.join(RECOVERY_POINT_FILE),
                    self.recovery_point.to_string().as_bytes(),
                )
                .map_err(|source| MaintenanceError::Io {
                    path: self.dir.join(RECOVERY_POINT_FILE),
                    op: "write recovery point",
                    source,
                })?;
        }
        Ok(())
    }

    /// Flushes everything appended so far, blocking the caller.
    pub fn flush(&mut self) -> Result<(), MaintenanceError> {
        if let Some(reason) = &self.offline {
            return Err(MaintenanceError::Offline {
                dir: self.dir.clone(),
                reason: reason.clone(),
            });
        }
        match self.prepare_flush() {
            Some(ticket) => {
                let result = ticket.sync();
                self.complete_flush(&ticket, result)
            }
            None => Ok(()),
        }
    }

    fn maintenance_io(
        &mut self,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    ) -> MaintenanceError {
        self.take_offline(format!("{op} of {} failed: {source}", path.display()));
        MaintenanceError::Io { path, op, source }
    }

    /// Removes every record at or after `offset` (a follower whose log diverged
    /// from its leader's). The cut is made at a batch boundary, so the new log end
    /// may be below `offset`; it is returned. The cut is durable when this returns.
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64, MaintenanceError> {
        if let Some(reason) = &self.offline {
            return Err(MaintenanceError::Offline {
                dir: self.dir.clone(),
                reason: reason.clone(),
            });
        }
        if offset >= self.next_offset {
            return Ok(self.next_offset);
        }
        if offset <= self.log_start_offset() {
            return self.truncate_fully_and_start_at(offset).map(|()| offset);
        }
        let fs = self.fs.clone();
        let later: Vec<i64> = self.segments.range(offset..).map(|(b, _)| *b).collect();
        for base in later {
            if let Some(seg) = self.segments.remove(&base) {
                let path = seg.path().to_owned();
                seg.delete(fs.as_ref())
                    .map_err(|e| self.maintenance_io("delete segment", path, e))?;
            }
        }
        let seg = self.active_mut();
        let result = seg.truncate_to(offset);
        let (new_end, cut) = match result {
            Ok(r) => r,
            Err(e) => {
                let path = self.active().path().to_owned();
                return Err(self.maintenance_io(
                    "truncate segment",
                    path,
                    io::Error::other(e.to_string()),
                ));
            }
        };
        let seg = self.active();
        let file = seg.file().clone();
        let path = seg.path().to_owned();
        seg.reactivate()
            .and_then(|()| file.sync_all())
            .and_then(|()| fs.sync_dir(&self.dir))
            .map_err(|e| self.maintenance_io("truncate segment", path, e))?;
        info!(dir = %self.dir.display(), offset, new_end, bytes_cut = cut, "log truncated");
        self.after_truncation(new_end)?;
        Ok(new_end)
    }

    /// Empties the log and restarts it at `offset` (a follower far behind the
    /// leader's log start, or a replica re-created from nothing).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), MaintenanceError> {
        let fs = self.fs.clone();
        let params = segment_params(&self.config);
        let path = self.dir.join(segment::file_name(offset, "log"));
        for (_, seg) in std::mem::take(&mut self.segments) {
            let p = seg.path().to_owned();
            seg.delete(fs.as_ref())
                .map_err(|e| self.maintenance_io("delete segment", p, e))?;
        }
        let seg = Segment::create(fs.as_ref(), &self.dir, offset, params, 0)
            .map_err(|e| self.maintenance_io("create segment", path.clone(), e))?;
        self.segments.insert(offset, seg);
        fs.sync_dir(&self.dir)
            .map_err(|e| self.maintenance_io("sync directory", path, e))?;
        self.epochs.truncate_from_end(offset);
        self.epochs.truncate_from_start(offset);
        self.after_truncation(offset)
    }

    fn after_truncation(&mut self, new_end: i64) -> Result<(), MaintenanceError> {
        self.next_offset = new_end;
        self.durable_offset = self.durable_offset.min(new_end);
        self.recovery_point = self.recovery_point.min(self.active().base_offset());
        self.rolled_unflushed.clear();
        self.dir_dirty = false;
        self.epochs.truncate_from_end(new_end);
        let checkpoint = self.dir.join(epoch::CHECKPOINT_FILE);
        self.epochs
            .persist(self.fs.as_ref())
            .map_err(|e| self.maintenance_io("write leader-epoch checkpoint", checkpoint, e))?;
        let rp = self.dir.join(RECOVERY_POINT_FILE);
        self.fs
            .write_atomic(&rp, self.recovery_point.to_string().as_bytes())
            .map_err(|e| self.maintenance_io("write recovery point", rp, e))
    }

    /// Deletes whole segments that `retention.ms` or `retention.bytes` expire,
    /// oldest first, never the active segment and never data at or above
    /// `upper_bound` (the high watermark). Returns the new log start offset.
    pub fn apply_retention(
        &mut self,
        now_ms: i64,
        upper_bound: i64,
    ) -> Result<i64, MaintenanceError> {
        let mut total = self.size_bytes() as i64;
        let mut doomed = Vec::new();
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for window in bases.windows(2) {
            let (base, next_base) = (window[0], window[1]);
            let seg = &self.segments[&base];
            if next_base > upper_bound {
                break;
            }
            let expired = self.config.retention_ms >= 0
                && seg.max_timestamp() < now_ms - self.config.retention_ms;
            let oversize = self.config.retention_bytes >= 0
                && total - seg.size() as i64 >= self.config.retention_bytes;
            if !(expired || oversize) {
                break;
            }
            total -= seg.size() as i64;
            doomed.push(base);
        }
        let fs = self.fs.clone();
        for base in doomed {
            if let Some(seg) = self.segments.remove(&base) {
                let path = seg.path().to_owned();
                info!(segment = %path.display(), "retention: deleting segment");
                seg.delete(fs.as_ref())
                    .map_err(|e| self.maintenance_io("delete segment", path, e))?;
            }
        }
        let start = self.log_start_offset();
        if self.epochs.truncate_from_start(start) {
            let checkpoint = self.dir.join(epoch::CHECKPOINT_FILE);
            self.epochs
                .persist(fs.as_ref())
                .map_err(|e| self.maintenance_io("write leader-epoch checkpoint", checkpoint, e))?;
        }
        Ok(start)
    }

    /// Closes the log cleanly: flushes, trims the active segment and its
    /// indexes, and writes the clean-shutdown marker so the next open skips
    /// recovery. Afterwards the log refuses appends (it reports itself offline).
    pub fn close(&mut self) -> Result<(), MaintenanceError> {
        self.flush()?;
        let fs = self.fs.clone();
        let seg = self.active_mut();
        let path = seg.path().to_owned();
        let sealed = seg.seal(fs.as_ref()).and_then(|()| seg.file().sync_all());
        sealed.map_err(|e| self.maintenance_io("seal segment", path, e))?;
        let rp = self.dir.join(RECOVERY_POINT_FILE);
        fs.write_atomic(&rp, self.next_offset.to_string().as_bytes())
            .map_err(|e| self.maintenance_io("write recovery point", rp, e))?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        fs.write_atomic(&marker, b"")
            .map_err(|e| self.maintenance_io("write clean-shutdown marker", marker, e))
    }
}

#[derive(Debug, Clone, Copy)]
struct Summary {
    first: BatchHeader,
    batches: usize,
    records: i64,
    max_timestamp: i64,
}

fn segment_params(config: &LogConfig) -> SegmentParams {
    SegmentParams {
        index_interval_bytes: config.index_interval_bytes,
        index_max_bytes: config.segment_index_bytes,
        preallocate_bytes: if config.preallocate {
            config.segment_bytes
        } else {
            0
        },
        max_batch_bytes: config.max_message_bytes.max(64 << 20),
    }
}

#[cfg(test)]
mod tests;
