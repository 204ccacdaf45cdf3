//! One log segment: a `<base offset>.log` file of record batches plus its
//! `.index` and `.timeindex`.
//!
//! Owns: where batches sit in the file, the indexes over them, recovery of a
//! single file. Must not: assign offsets or decide when to roll; the log does.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::debug;

use super::OFFSET_LIMIT;
use super::batch::{self, BatchError, BatchHeader, HEADER_LEN};
use super::epoch::EpochCache;
use super::error::{Corruption, IndexError, ReadError};
use super::fs::{self, FileSystem, SegmentFile};
use super::index::{Index, OffsetEntry, TimeEntry};

/// File name of the segment with `base_offset` and `extension` ("log", "index", "timeindex").
pub fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// Settings a segment needs from the log's config.
#[derive(Debug, Clone, Copy)]
pub struct SegmentParams {
    pub index_interval_bytes: u64,
    pub index_max_bytes: usize,
    /// Physical size to preallocate the active segment's file to (0: none).
    pub preallocate_bytes: u64,
    /// Largest batch recovery will believe a length field about; a larger one is
    /// corruption (so a flipped bit cannot make recovery allocate gigabytes).
    pub max_batch_bytes: usize,
}

/// What recovering one segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecovery {
    /// Bytes of valid batches kept.
    pub valid_bytes: u64,
    /// Bytes cut from the end (0 if the file ended cleanly).
    pub truncated_bytes: u64,
    /// Why the cut happened; `None` when only a zero-filled (preallocated) tail was dropped.
    pub reason: Option<BatchError>,
}

/// Where the write cursor of a segment stands; saved before an append so a
/// failed one can be undone.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    size: u64,
    next_offset: i64,
    bytes_since_index: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
}

/// A range of a segment file holding whole batches (the last may be partial if a
/// byte limit cut it, as with Kafka), to be sent as-is.
#[derive(Debug, Clone)]
pub struct LogSlice {
    /// The file to send from (with `sendfile` where it has a descriptor).
    pub file: Arc<dyn SegmentFile>,
    /// Start position in the file.
    pub position: u64,
    /// Number of bytes.
    pub len: usize,
    /// Base offset of the first batch in the slice.
    pub first_offset: i64,
}

impl LogSlice {
    /// Appends the slice's bytes to `out`. Fails if the file was truncated
    /// underneath (the data is then no longer part of the log).
    pub fn read_into(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        out.resize(start + self.len, 0);
        let n = self.file.read_full_at(&mut out[start..], self.position)?;
        if n != self.len {
            out.truncate(start);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "segment was truncated during the read",
            ));
        }
        Ok(())
    }
}

/// How far ahead of the data, in aligned windows, the page cache of a
/// preallocated segment is kept zero-filled.
///
/// Why: appends arrive as one write per produce request (a 16 KiB batch by
/// the Java producer's default), each at an unaligned position. The kernel
/// then allocates page-cache memory and disk blocks a few KiB at a time, and
/// that costs more than copying the data. On this project's 2-core VM
/// (ext4), writing 16,445-byte batches ran at about 700 MB/s where `dd` with
/// 1 MiB writes ran at 1.5 GB/s. Writing zeros ahead in aligned 256 KiB
/// windows lets the kernel allocate large pages once per window, and the
/// appends only copy into them: 1.2–1.5 GB/s for the same batches, and an
/// fdatasync every 80 batches went from 670 to about 1,070 MB/s. Larger
/// windows measured no better (2 MiB: worse).
pub const ZERO_AHEAD: u64 = fs::ZERO_FILL_MAX as u64;

/// One segment of a partition's log.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    path: PathBuf,
    file: Arc<dyn SegmentFile>,
    offsets: Index<OffsetEntry>,
    times: Index<TimeEntry>,
    cursor: Cursor,
    /// Timestamp that `segment.ms` counts from: the first batch's max timestamp,
    /// or the creation time of an empty segment.
    rolling_base_ms: Option<i64>,
    params: SegmentParams,
    /// The page cache is zero-filled from the data's end up to here (0: not
    /// known to be; reset whenever the file's length is cut).
    zeroed_to: u64,
}

impl Segment {
    fn open_files(
        fs: &dyn FileSystem,
        dir: &Path,
        base_offset: i64,
        params: SegmentParams,
    ) -> io::Result<Self> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = fs.open_segment(&path, true)?;
        let offsets = Index::open(
            fs,
            &dir.join(file_name(base_offset, "index")),
            params.index_max_bytes,
        )?;
        let times = Index::open(
            fs,
            &dir.join(file_name(base_offset, "timeindex")),
            params.index_max_bytes,
        )?;
        Ok(Self {
            base_offset,
            path,
            file,
            offsets,
            times,
            cursor: Cursor {
                size: 0,
                next_offset: base_offset,
                bytes_since_index: 0,
                max_timestamp: -1,
                offset_of_max_timestamp: base_offset,
            },
            rolling_base_ms: None,
            params,
            zeroed_to: 0,
        })
    }

    /// Creates an empty segment (replacing any leftover files of the same name).
    pub fn create(
        fs: &dyn FileSystem,
        dir: &Path,
        base_offset: i64,
        params: SegmentParams,
        now_ms: i64,
    ) -> io::Result<Self> {
        let mut seg = Self::open_files(fs, dir, base_offset, params)?;
        seg.file.set_len(0)?;
        seg.offsets.clear();
        seg.times.clear();
        seg.offsets.trim()?;
        seg.times.trim()?;
        seg.rolling_base_ms = Some(now_ms);
        seg.preallocate()?;
        Ok(seg)
    }

    /// Opens a segment that was sealed or cleanly closed. Trust skips the
    /// expensive part of recovery: no CRCs, and no walk over the batches the
    /// offset index already covers. What the open computes from still gets
    /// cheap checks, so garbage in the files cannot become impossible offsets
    /// or positions:
    /// - the offset index ascends in offset and position, points inside the
    ///   data, and its last entry names the batch that starts where it points;
    /// - the first batch and every batch after the last index entry have a sane
    ///   header (magic, length within the file) and offsets from where the
    ///   previous batch (or `min_offset`, the previous segment's end) left off,
    ///   within this segment's relative (u32) range, below `next_base` and
    ///   below [`OFFSET_LIMIT`](super::OFFSET_LIMIT);
    /// - the time index ascends and names only offsets the segment holds.
    ///
    /// `Err` is an I/O failure. `Ok(Err(corruption))` says which check failed:
    /// the caller must then [`recover`](Self::recover) the segment instead.
    pub fn open_trusted(
        fs: &dyn FileSystem,
        dir: &Path,
        base_offset: i64,
        params: SegmentParams,
        min_offset: i64,
        next_base: Option<i64>,
    ) -> io::Result<Result<Self, Corruption>> {
        let mut seg = Self::open_files(fs, dir, base_offset, params)?;
        let size = seg.file.len()?;
        seg.cursor.size = size;
        if let Err(e) = seg.check_offset_index() {
            return Ok(Err(e));
        }
        let max = seg.max_offset(next_base);
        // The index's last entry, if any: the walk checks the first batch, then
        // jumps there (trusting what lies between) and walks on to the end.
        let anchor = seg.offsets.last().map(|e| {
            let entry = seg.offsets.len() - 1;
            let offset = base_offset + e.relative_offset as i64;
            (entry, offset, e.position as u64)
        });
        let mut anchor_seen = false;
        let mut expected = min_offset.max(base_offset);
        let mut pos = 0u64;
        while pos < size {
            let at_anchor = anchor.is_some_and(|(_, _, at)| at == pos);
            let checked = seg.checked_header(pos, expected, max)?;
            let (h, len) = match (checked, anchor) {
                (Ok((h, _)), Some((_, offset, _))) if at_anchor && h.base_offset != offset => {
                    return Ok(Err(seg.misplaced_entry(anchor)));
                }
                (Err(_), _) if at_anchor => return Ok(Err(seg.misplaced_entry(anchor))),
                (Err(reason), _) => return Ok(Err(seg.corrupt_batch(pos, reason))),
                (Ok(checked), _) => checked,
            };
            anchor_seen |= at_anchor;
            if pos == 0 {
                seg.rolling_base_ms = Some(h.max_timestamp);
            }
            if h.max_timestamp > seg.cursor.max_timestamp {
                seg.cursor.max_timestamp = h.max_timestamp;
                seg.cursor.offset_of_max_timestamp = h.last_offset();
            }
            // Cannot overflow: the last offset was checked to be at most `max`.
            seg.cursor.next_offset = h.last_offset() + 1;
            expected = seg.cursor.next_offset;
            pos += len;
            if let Some((_, _, at)) = anchor
                && !anchor_seen
            {
                if pos > at {
                    // The entry points inside a batch.
                    return Ok(Err(seg.misplaced_entry(anchor)));
                }
                pos = at;
            }
        }
        if let Err(e) = seg.check_time_index() {
            return Ok(Err(e));
        }
        // On a tie the entry names the earlier batch, as an append would have.
        if let Some(t) = seg.times.last()
            && t.timestamp >= seg.cursor.max_timestamp
        {
            seg.cursor.max_timestamp = t.timestamp;
            seg.cursor.offset_of_max_timestamp = base_offset + t.relative_offset as i64;
        }
        seg.cursor.bytes_since_index = size - anchor.map_or(0, |(_, _, at)| at);
        Ok(Ok(seg))
    }

    /// The highest offset a batch of this segment may hold: the end of its
    /// relative (u32) range, below the next segment's base and below the log's
    /// offset limit.
    fn max_offset(&self, next_base: Option<i64>) -> i64 {
        let mut max = self
            .base_offset
            .saturating_add(u32::MAX as i64)
            .min(OFFSET_LIMIT - 1);
        if let Some(next) = next_base {
            max = max.min(next.saturating_sub(1));
        }
        max
    }

    /// Offsets and positions of the offset index ascend and stay inside the data.
    fn check_offset_index(&self) -> Result<(), Corruption> {
        let mut previous: Option<OffsetEntry> = None;
        for entry in 0..self.offsets.len() {
            let Some(e) = self.offsets.get(entry) else {
                break;
            };
            let (offset, position) = (
                self.base_offset + e.relative_offset as i64,
                e.position as u64,
            );
            let reason = if position >= self.cursor.size {
                IndexError::OffsetEntryPastEnd {
                    entry,
                    position,
                    size: self.cursor.size,
                }
            } else if previous
                .is_some_and(|p| e.relative_offset <= p.relative_offset || e.position <= p.position)
            {
                IndexError::OffsetEntryOutOfOrder {
                    entry,
                    offset,
                    position,
                }
            } else {
                previous = Some(e);
                continue;
            };
            return Err(self.corrupt_index(self.offsets.path(), reason));
        }
        Ok(())
    }

    /// Timestamps of the time index ascend, their offsets do not go back, and
    /// every one is below the segment's end (known once the data was walked).
    fn check_time_index(&self) -> Result<(), Corruption> {
        let mut previous: Option<TimeEntry> = None;
        for entry in 0..self.times.len() {
            let Some(e) = self.times.get(entry) else {
                break;
            };
            let offset = self.base_offset + e.relative_offset as i64;
            let reason = if offset >= self.cursor.next_offset {
                IndexError::TimeEntryPastEnd {
                    entry,
                    offset,
                    end: self.cursor.next_offset,
                }
            } else if previous.is_some_and(|p| {
                e.timestamp <= p.timestamp || e.relative_offset < p.relative_offset
            }) {
                IndexError::TimeEntryOutOfOrder {
                    entry,
                    timestamp: e.timestamp,
                    offset,
                }
            } else {
                previous = Some(e);
                continue;
            };
            return Err(self.corrupt_index(self.times.path(), reason));
        }
        Ok(())
    }

    /// The header at `pos` of a batch whose contents are trusted: it must still
    /// fit in the file and hold offsets in `[expected, max]`. Yields the header
    /// and the batch's size.
    fn checked_header(
        &self,
        pos: u64,
        expected: i64,
        max: i64,
    ) -> io::Result<Result<(BatchHeader, u64), BatchError>> {
        let available = self.cursor.size.saturating_sub(pos);
        let Some(h) = self.read_header(pos)? else {
            return Ok(Err(BatchError::TruncatedHeader {
                available: available as usize,
            }));
        };
        let size = match h.size() {
            Ok(size) => size,
            Err(e) => return Ok(Err(e)),
        };
        // No `max_batch_bytes` check: a batch written before `max.message.bytes`
        // was lowered is still valid.
        let checked = if h.magic != 2 {
            Err(BatchError::BadMagic(h.magic))
        } else if size as u64 > available {
            Err(BatchError::Truncated {
                needed: size,
                available: available as usize,
            })
        } else if h.last_offset_delta < 0 || h.records_count < 0 {
            Err(BatchError::BadRecordCount {
                count: h.records_count,
                last_offset_delta: h.last_offset_delta,
            })
        } else {
            check_placement(&h, expected, max)
        };
        Ok(checked.map(|()| (h, size as u64)))
    }

    fn misplaced_entry(&self, anchor: Option<(usize, i64, u64)>) -> Corruption {
        let (entry, offset, position) = anchor.unwrap_or_default();
        self.corrupt_index(
            self.offsets.path(),
            IndexError::OffsetEntryMisplaced {
                entry,
                offset,
                position,
            },
        )
    }

    fn corrupt_batch(&self, position: u64, reason: BatchError) -> Corruption {
        Corruption::Batch {
            path: self.path.clone(),
            position,
            reason,
        }
    }

    fn corrupt_index(&self, path: &Path, reason: IndexError) -> Corruption {
        Corruption::Index {
            path: path.to_owned(),
            reason,
        }
    }

    /// Opens a segment whose contents are not trusted and re-validates every
    /// batch: CRCs, offsets ascending from `min_offset`, then rebuilds both indexes
    /// and cuts the file at the first torn or corrupt batch. Epochs seen in the
    /// batches are recorded in `epochs`.
    pub fn recover(
        fs: &dyn FileSystem,
        dir: &Path,
        base_offset: i64,
        params: SegmentParams,
        min_offset: i64,
        next_base: Option<i64>,
        epochs: &mut EpochCache,
    ) -> io::Result<(Self, SegmentRecovery)> {
        let mut seg = Self::open_files(fs, dir, base_offset, params)?;
        seg.offsets.clear();
        seg.times.clear();
        let file_len = seg.file.len()?;
        let mut chunk = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        let mut expected = min_offset.max(base_offset);
        let max = seg.max_offset(next_base);
        let mut reason = None;
        let mut zero_tail = false;
        'scan: while pos < file_len {
            let n = seg.file.read_full_at(&mut chunk, pos)?;
            let mut at = 0usize;
            while at < n {
                let rest = &chunk[at..n];
                let header = match BatchHeader::parse(rest) {
                    Ok(h) => h,
                    // Header cut by the chunk end: read on from here, unless this is the file's end.
                    Err(_) if pos + (n as u64) < file_len && at > 0 => break,
                    Err(e) => {
                        zero_tail = rest.iter().all(|&b| b == 0);
                        reason = Some(e);
                        break 'scan;
                    }
                };
                if header.batch_length == 0
                    && header.base_offset == 0
                    && rest[..HEADER_LEN].iter().all(|&b| b == 0)
                {
                    zero_tail = true;
                    reason = Some(BatchError::ZeroFilled);
                    break 'scan;
                }
                let size = match header.size() {
                    Ok(s) if s > params.max_batch_bytes => {
                        reason = Some(BatchError::Oversized {
                            size: s,
                            max: params.max_batch_bytes,
                        });
                        break 'scan;
                    }
                    Ok(s) if (pos + (at + s) as u64) <= file_len => s,
                    Ok(s) => {
                        reason = Some(BatchError::Truncated {
                            needed: s,
                            available: (file_len - pos) as usize - at,
                        });
                        break 'scan;
                    }
                    Err(e) => {
                        reason = Some(e);
                        break 'scan;
                    }
                };
                if at + size > n {
                    if at == 0 {
                        // A batch larger than the chunk: grow the chunk and retry.
                        chunk.resize(size, 0);
                    }
                    break;
                }
                // Offsets are not covered by the CRC: check where they put the batch.
                let checked = batch::validate(&rest[..size], false)
                    .and_then(|h| check_placement(&h, expected, max).map(|()| h));
                let header = match checked {
                    Ok(h) => h,
                    Err(e) => {
                        reason = Some(e);
                        break 'scan;
                    }
                };
                seg.index_batch(fs, pos + at as u64, &header)?;
                seg.cursor.size = pos + (at + size) as u64;
                // Cannot overflow: the last offset was checked to be at most `max`.
                seg.cursor.next_offset = header.last_offset() + 1;
                expected = seg.cursor.next_offset;
                epochs.assign(header.partition_leader_epoch, header.base_offset);
                if seg.rolling_base_ms.is_none() {
                    seg.rolling_base_ms = Some(header.max_timestamp);
                }
                at += size;
            }
            pos += at as u64;
        }
        let valid = seg.cursor.size;
        let outcome = SegmentRecovery {
            valid_bytes: valid,
            truncated_bytes: file_len - valid,
            reason: if zero_tail || valid == file_len {
                None
            } else {
                reason
            },
        };
        seg.file.set_len(valid)?;
        // The rebuilt indexes replace the files' old contents entirely.
        seg.offsets.trim()?;
        seg.times.trim()?;
        Ok((seg, outcome))
    }

    fn io(&self, op: &'static str, source: io::Error) -> ReadError {
        ReadError::Io {
            path: self.path.clone(),
            op,
            source,
        }
    }

    fn corrupt(&self, position: u64, reason: BatchError) -> ReadError {
        ReadError::Corruption {
            path: self.path.clone(),
            position,
            reason,
        }
    }

    /// Base offset (first offset this segment may hold).
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset after the last batch.
    pub fn next_offset(&self) -> i64 {
        self.cursor.next_offset
    }

    /// Bytes of batches in the segment.
    pub fn size(&self) -> u64 {
        self.cursor.size
    }

    /// Newest timestamp in the segment (-1 if empty).
    pub fn max_timestamp(&self) -> i64 {
        self.cursor.max_timestamp
    }

    /// Offset of the batch holding the newest timestamp.
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.cursor.offset_of_max_timestamp
    }

    /// The data file.
    pub fn file(&self) -> &Arc<dyn SegmentFile> {
        &self.file
    }

    /// Path of the data file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an append of `len` bytes ending at `last_offset` must go to a new segment.
    pub fn must_roll_for(
        &self,
        len: u64,
        last_offset: i64,
        segment_bytes: u64,
        segment_ms: i64,
        now_ms: i64,
    ) -> bool {
        if self.cursor.size == 0 {
            return false;
        }
        self.cursor.size + len > segment_bytes
            || self.cursor.size + len > u32::MAX as u64
            || last_offset.saturating_sub(self.base_offset) > u32::MAX as i64
            || self.offsets.is_full()
            || self.times.is_full()
            || self
                .rolling_base_ms
                .is_some_and(|base| now_ms.saturating_sub(base) >= segment_ms)
    }

    fn preallocate(&self) -> io::Result<()> {
        if self.params.preallocate_bytes > self.cursor.size {
            self.file.set_len(self.params.preallocate_bytes)?;
        }
        Ok(())
    }

    /// Zero-fills the page cache from the data's end, in [`ZERO_AHEAD`]
    /// windows, to past `end` (where the coming append ends), within the
    /// preallocated length. Never touches data: it starts at the data's end
    /// at the earliest. Best effort: a failure (a full disk) leaves the append
    /// to its own write, which reports it.
    fn zero_ahead(&mut self, end: u64) {
        let limit = self.params.preallocate_bytes;
        if end <= self.zeroed_to || end > limit {
            return;
        }
        let mut from = self.zeroed_to.max(self.cursor.size);
        let to = ((end / ZERO_AHEAD + 1) * ZERO_AHEAD).min(limit);
        while from < to {
            let window_end = ((from / ZERO_AHEAD + 1) * ZERO_AHEAD).min(to);
            if let Err(e) = self.file.zero_fill(from, (window_end - from) as usize) {
                debug!(path = %self.path.display(), error = %e, "zero-fill ahead of appends failed");
                return;
            }
            from = window_end;
            self.zeroed_to = from;
        }
    }

    /// Makes this (sealed) segment the active one again, e.g. after truncation.
    pub fn reactivate(&self) -> io::Result<()> {
        self.preallocate()
    }

    fn index_batch(
        &mut self,
        fs: &dyn FileSystem,
        position: u64,
        h: &BatchHeader,
    ) -> io::Result<()> {
        if h.max_timestamp > self.cursor.max_timestamp {
            self.cursor.max_timestamp = h.max_timestamp;
            self.cursor.offset_of_max_timestamp = h.last_offset();
        }
        if self.cursor.bytes_since_index >= self.params.index_interval_bytes {
            let relative_offset = (h.base_offset - self.base_offset) as u32;
            self.offsets.push(
                fs,
                OffsetEntry {
                    relative_offset,
                    position: position as u32,
                },
            )?;
            self.maybe_time_entry(fs)?;
            self.cursor.bytes_since_index = 0;
        }
        self.cursor.bytes_since_index += h.size().unwrap_or(0) as u64;
        Ok(())
    }

    fn maybe_time_entry(&mut self, fs: &dyn FileSystem) -> io::Result<()> {
        let newer = self
            .times
            .last()
            .is_none_or(|t| self.cursor.max_timestamp > t.timestamp);
        if newer && self.cursor.max_timestamp >= 0 && !self.times.is_full() {
            let relative_offset = (self.cursor.offset_of_max_timestamp - self.base_offset) as u32;
            self.times.push(
                fs,
                TimeEntry {
                    timestamp: self.cursor.max_timestamp,
                    relative_offset,
                },
            )?;
        }
        Ok(())
    }

    /// Appends already validated and stamped batches. On failure the file and
    /// indexes are rolled back to where they were; the error says whether that worked.
    pub fn append(
        &mut self,
        fs: &dyn FileSystem,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<(), (io::Error, io::Result<()>)> {
        let saved = self.cursor;
        let saved_offsets = self.offsets.len();
        let saved_times = self.times.len();
        self.zero_ahead(saved.size + batches.len() as u64);
        let result = self.file.write_all_at(batches, saved.size).and_then(|()| {
            let mut pos = 0usize;
            while pos < batches.len() {
                let h = BatchHeader::parse(&batches[pos..]).map_err(io::Error::other)?;
                self.index_batch(fs, saved.size + pos as u64, &h)?;
                self.cursor.next_offset = h.last_offset().saturating_add(1);
                pos += h.size().map_err(io::Error::other)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.cursor.size = saved.size + batches.len() as u64;
                if self.rolling_base_ms.is_none() {
                    self.rolling_base_ms = Some(now_ms);
                }
                Ok(())
            }
            Err(e) => {
                self.cursor = saved;
                self.zeroed_to = 0;
                self.offsets.truncate_to_len(saved_offsets);
                self.times.truncate_to_len(saved_times);
                // Cut anything torn off the end so no partial batch outlives the error.
                let undo = self
                    .file
                    .set_len(saved.size)
                    .and_then(|()| self.preallocate());
                Err((e, undo))
            }
        }
    }

    /// Reads the batch header at `pos`, or `None` at the end of the segment.
    fn read_header(&self, pos: u64) -> io::Result<Option<BatchHeader>> {
        if pos.saturating_add(HEADER_LEN as u64) > self.cursor.size {
            return Ok(None);
        }
        let mut buf = [0u8; HEADER_LEN];
        let n = self.file.read_full_at(&mut buf, pos)?;
        Ok(BatchHeader::parse(&buf[..n]).ok())
    }

    /// [`read_header`](Self::read_header) for the read paths.
    fn header_at(&self, pos: u64) -> Result<Option<BatchHeader>, ReadError> {
        self.read_header(pos).map_err(|e| self.io("read", e))
    }

    /// The first batch whose last offset is ≥ `offset`, with its position.
    pub fn find(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, ReadError> {
        let relative = offset
            .saturating_sub(self.base_offset)
            .clamp(0, u32::MAX as i64);
        let mut pos = self
            .offsets
            .floor(relative)
            .map_or(0, |e| e.position as u64);
        while pos < self.cursor.size {
            let Some(h) = self.header_at(pos)? else {
                return Ok(None);
            };
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.size().map_err(|reason| self.corrupt(pos, reason))? as u64;
        }
        Ok(None)
    }

    /// Up to `max_bytes` of batches starting with the one holding `offset` and
    /// ending before `max_offset`. With `min_one_batch`, the first batch is
    /// returned whole even if it is larger than `max_bytes` (KIP-74).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Option<LogSlice>, ReadError> {
        let Some((pos, first)) = self.find(offset)? else {
            return Ok(None);
        };
        if first.base_offset >= max_offset {
            return Ok(None);
        }
        let end = if max_offset < self.cursor.next_offset {
            self.find(max_offset)?.map_or(self.cursor.size, |(p, _)| p)
        } else {
            self.cursor.size
        };
        // Only garbage in the unchecked middle of a trusted segment can put the
        // batch holding `max_offset` before the one holding `offset`.
        let Some(available) = end.checked_sub(pos) else {
            return Err(self.corrupt(
                pos,
                BatchError::OffsetBelow {
                    base_offset: first.base_offset,
                    expected: max_offset,
                },
            ));
        };
        let available = available as usize;
        let first_size = first.size().map_err(|reason| self.corrupt(pos, reason))?;
        let mut len = available.min(max_bytes);
        if min_one_batch && len < first_size {
            len = first_size.min(available);
        }
        if len == 0 {
            return Ok(None);
        }
        Ok(Some(LogSlice {
            file: self.file.clone(),
            position: pos,
            len,
            first_offset: first.base_offset,
        }))
    }

    /// The first record with timestamp ≥ `target`: `(offset, timestamp)`. For a
    /// compressed batch the batch's base offset and max timestamp stand in.
    pub fn find_by_timestamp(&self, target: i64) -> Result<Option<(i64, i64)>, ReadError> {
        if self.cursor.max_timestamp < target {
            return Ok(None);
        }
        let from = self.times.floor(target).map_or(self.base_offset, |t| {
            self.base_offset.saturating_add(t.relative_offset as i64)
        });
        let Some((mut pos, _)) = self.find(from)? else {
            return Ok(None);
        };
        while pos < self.cursor.size {
            let Some(h) = self.header_at(pos)? else { break };
            let size = h.size().map_err(|reason| self.corrupt(pos, reason))?;
            if h.max_timestamp >= target {
                let mut bytes = vec![0u8; size];
                self.file
                    .read_full_at(&mut bytes, pos)
                    .map_err(|e| self.io("read", e))?;
                let found = batch::first_offset_at_or_after(&bytes, target)
                    .unwrap_or((h.base_offset, h.max_timestamp));
                return Ok(Some(found));
            }
            pos += size as u64;
        }
        Ok(None)
    }

    /// Walks the headers of every batch from `offset` on.
    pub fn for_each_batch(
        &self,
        offset: i64,
        f: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(), ReadError> {
        let Some((mut pos, first)) = self.find(offset)? else {
            return Ok(());
        };
        // Each header must fit, be a v2 batch and continue the offsets of the
        // one before: a walk over damage reports it instead of reading on.
        let mut expected = first.base_offset;
        let max = self.cursor.next_offset.saturating_sub(1);
        while pos < self.cursor.size {
            let (h, size) = self
                .checked_header(pos, expected, max)
                .map_err(|e| self.io("read", e))?
                .map_err(|reason| self.corrupt(pos, reason))?;
            f(&h);
            expected = h.last_offset() + 1;
            pos += size;
        }
        Ok(())
    }

    /// Cuts the segment before the batch holding `offset`; returns the new next
    /// offset (the base of that batch) and how many bytes were cut.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(i64, u64), ReadError> {
        let Some((pos, h)) = self.find(offset)? else {
            return Ok((self.cursor.next_offset, 0));
        };
        let cut = self.cursor.size - pos;
        let base = self.base_offset;
        self.offsets.truncate_from(|e| {
            base + (e.relative_offset as i64) < h.base_offset && (e.position as u64) < pos
        });
        self.times
            .truncate_from(|e| base + (e.relative_offset as i64) < h.base_offset);
        self.zeroed_to = 0;
        self.file.set_len(pos).map_err(|e| self.io("truncate", e))?;
        self.cursor.size = pos;
        self.cursor.next_offset = h.base_offset;
        self.cursor.bytes_since_index = pos - self.offsets.last().map_or(0, |e| e.position as u64);
        // Recompute the newest timestamp from what is left.
        self.cursor.max_timestamp = -1;
        self.cursor.offset_of_max_timestamp = base;
        let mut newest = (-1, base);
        self.for_each_batch(base, &mut |h| {
            if h.max_timestamp > newest.0 {
                newest = (h.max_timestamp, h.last_offset());
            }
        })?;
        (
            self.cursor.max_timestamp,
            self.cursor.offset_of_max_timestamp,
        ) = newest;
        if pos == 0 {
            self.rolling_base_ms = None;
        }
        Ok((h.base_offset, cut))
    }

    /// Seals the segment: final time-index entry, file and indexes trimmed to
    /// their contents (on roll and on clean close).
    pub fn seal(&mut self, fs: &dyn FileSystem) -> io::Result<()> {
        self.maybe_time_entry(fs)?;
        self.zeroed_to = 0;
        self.file.set_len(self.cursor.size)?;
        self.offsets.trim()?;
        self.times.trim()
    }

    /// Removes the segment's files.
    pub fn delete(self, fs: &dyn FileSystem) -> io::Result<()> {
        fs.remove(&self.path)?;
        fs.remove(self.offsets.path())?;
        fs.remove(self.times.path())
    }
}

/// Where a batch's offsets (not covered by its CRC) put it: starting at or
/// after `expected` (where the batch or segment before it ended) and ending at
/// or before `max` (see [`Segment::max_offset`]).
fn check_placement(h: &BatchHeader, expected: i64, max: i64) -> Result<(), BatchError> {
    if h.base_offset < expected {
        return Err(BatchError::OffsetBelow {
            base_offset: h.base_offset,
            expected,
        });
    }
    if h.last_offset_delta < 0 || h.last_offset() > max {
        return Err(BatchError::OffsetOutOfRange {
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            max,
        });
    }
    Ok(())
}
