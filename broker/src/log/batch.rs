//! Kafka v2 record batches seen as bytes: header fields, validation, and the two
//! fields the log stamps in place (base offset and partition leader epoch).
//!
//! Owns: the on-disk/on-wire batch layout. Must not: allocate per record or
//! re-encode a batch; payloads (possibly compressed) are never decoded here.

use thiserror::Error;

/// Size of the fixed v2 batch header, up to the first record.
pub const HEADER_LEN: usize = 61;
/// Bytes before the CRC-covered region that carry the batch length field.
pub const LOG_OVERHEAD: usize = 12;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;

/// Why a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// Fewer bytes than a batch header.
    #[error("truncated batch: {available} bytes, header needs {HEADER_LEN}")]
    TruncatedHeader { available: usize },
    /// The length field claims more bytes than there are.
    #[error("truncated batch: length field says {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    /// The length field is too small to hold a header.
    #[error("batch length {0} is smaller than a header")]
    LengthTooSmall(i32),
    /// Magic byte other than 2.
    #[error("unsupported magic {0} (only v2 record batches are accepted)")]
    BadMagic(i8),
    /// CRC-32C mismatch.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// Zeros where a batch should be: space preallocated but never written.
    #[error("zero-filled region where a batch should start")]
    ZeroFilled,
    /// Offsets do not ascend: the batch starts below where the previous one ended.
    #[error("batch base offset {base_offset} is below the expected {expected}")]
    OffsetBelow { base_offset: i64, expected: i64 },
    /// The batch's offsets reach past the last one its place may hold (the end
    /// of its segment's relative range, the next segment's base, or the log's
    /// offset limit).
    #[error(
        "batch offsets {base_offset}..={last_offset} reach past {max}, the last offset allowed here"
    )]
    OffsetOutOfRange {
        base_offset: i64,
        last_offset: i64,
        max: i64,
    },
    /// The length field exceeds the largest batch this log accepts.
    #[error("batch length {size} exceeds the largest accepted batch ({max} bytes)")]
    Oversized { size: usize, max: usize },
    /// A batch with no records, or a record count that disagrees with the offset delta.
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    BadRecordCount { count: i32, last_offset_delta: i32 },
}

/// The fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `LOG_OVERHEAD + batch_length`.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `bytes` without validating the body.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::TruncatedHeader {
                available: bytes.len(),
            });
        }
        Ok(Self {
            base_offset: be_i64(bytes, BASE_OFFSET),
            batch_length: be_i32(bytes, BATCH_LENGTH),
            partition_leader_epoch: be_i32(bytes, LEADER_EPOCH),
            magic: bytes[MAGIC] as i8,
            crc: be_i32(bytes, CRC) as u32,
            attributes: be_i16(bytes, ATTRIBUTES),
            last_offset_delta: be_i32(bytes, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(bytes, BASE_TIMESTAMP),
            max_timestamp: be_i64(bytes, MAX_TIMESTAMP),
            producer_id: be_i64(bytes, PRODUCER_ID),
            producer_epoch: be_i16(bytes, PRODUCER_EPOCH),
            base_sequence: be_i32(bytes, BASE_SEQUENCE),
            records_count: be_i32(bytes, RECORDS_COUNT),
        })
    }

    /// Total size of the batch in bytes, or an error if the length field is impossible.
    pub fn size(&self) -> Result<usize, BatchError> {
        if (self.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::LengthTooSmall(self.batch_length));
        }
        Ok(LOG_OVERHEAD + self.batch_length as usize)
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        // Saturating: headers read back from disk or a peer may hold anything.
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    /// Whether the batch carries control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    /// Whether the producer set a producer id (idempotent or transactional).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record, wrapping like Kafka's.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}

/// Validates one complete batch (`bytes` is exactly one batch): magic, length and
/// CRC-32C over attributes..end. With `strict_count`, also requires that the record
/// count agrees with the last offset delta (true for producer batches; compacted
/// batches from a leader may have gaps).
pub fn validate(bytes: &[u8], strict_count: bool) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    let size = header.size()?;
    if size != bytes.len() {
        return Err(BatchError::Truncated {
            needed: size,
            available: bytes.len(),
        });
    }
    if header.magic != 2 {
        return Err(BatchError::BadMagic(header.magic));
    }
    let computed = crc32c::crc32c(&bytes[ATTRIBUTES..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    // A negative delta or count is never valid, compacted or not: offsets would run backwards.
    let impossible = header.last_offset_delta < 0 || header.records_count < 0;
    if impossible
        || (strict_count
            && (header.records_count <= 0 || header.last_offset_delta != header.records_count - 1))
    {
        return Err(BatchError::BadRecordCount {
            count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Writes the base offset into a batch; the CRC does not cover it.
pub fn stamp_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch into a batch; the CRC does not cover it.
pub fn stamp_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Splits a buffer of concatenated batches, validating each. Yields
/// `(position, header)`; stops at the first error.
#[derive(Debug)]
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    strict_count: bool,
}

impl<'a> Batches<'a> {
    /// Iterates the batches in `buf`.
    pub fn new(buf: &'a [u8], strict_count: bool) -> Self {
        Self {
            buf,
            pos: 0,
            strict_count,
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(usize, BatchHeader), (usize, BatchError)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let rest = &self.buf[start..];
        let result = BatchHeader::parse(rest).and_then(|h| {
            let size = h.size()?;
            if size > rest.len() {
                return Err(BatchError::Truncated {
                    needed: size,
                    available: rest.len(),
                });
            }
            validate(&rest[..size], self.strict_count).map(|h| (h, size))
        });
        match result {
            Ok((h, size)) => {
                self.pos += size;
                Some(Ok((start, h)))
            }
            Err(e) => {
                self.pos = self.buf.len();
                Some(Err((start, e)))
            }
        }
    }
}

/// Finds, in an uncompressed batch, the first record whose timestamp is at least
/// `target`: `(offset, timestamp)`. Returns `None` if the batch is compressed or
/// its records cannot be walked (the caller then uses the batch's base offset).
pub fn first_offset_at_or_after(batch: &[u8], target: i64) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(batch).ok()?;
    if header.compression() != 0 {
        return None;
    }
    let end = header.size().ok()?.min(batch.len());
    let mut pos = HEADER_LEN;
    for _ in 0..header.records_count {
        let (len, n) = read_varint(batch.get(pos..end)?)?;
        let body_start = pos + n;
        // attributes (1 byte), then timestampDelta (varlong), offsetDelta (varint).
        let mut p = body_start + 1;
        let (ts_delta, n) = read_varint(batch.get(p..end)?)?;
        p += n;
        let (offset_delta, _) = read_varint(batch.get(p..end)?)?;
        if header.base_timestamp + ts_delta >= target {
            return Some((
                header.base_offset + offset_delta,
                header.base_timestamp + ts_delta,
            ));
        }
        pos = body_start.checked_add(usize::try_from(len).ok()?)?;
    }
    None
}

/// Reads a zig-zag varint (up to 64 bits); returns the value and bytes consumed.
fn read_varint(buf: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        raw |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

/// Builders of valid batches, for tests and benchmarks.
pub mod testing {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    /// Builds an uncompressed v2 batch of `values` with timestamps
    /// `base_timestamp + i` and the given producer fields.
    pub fn batch_with(
        values: &[&[u8]],
        base_timestamp: i64,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let mut body = vec![0u8]; // attributes
            put_varint(&mut body, i as i64); // timestamp delta
            put_varint(&mut body, i as i64); // offset delta
            put_varint(&mut body, -1); // key: null
            put_varint(&mut body, v.len() as i64);
            body.extend_from_slice(v);
            put_varint(&mut body, 0); // headers
            put_varint(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let n = values.len() as i32;
        let mut b = vec![0u8; HEADER_LEN];
        b[BATCH_LENGTH..BATCH_LENGTH + 4]
            .copy_from_slice(&((HEADER_LEN - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
        b[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
        b[MAGIC] = 2;
        b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&(n - 1).to_be_bytes());
        b[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&base_timestamp.to_be_bytes());
        b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8]
            .copy_from_slice(&(base_timestamp + n as i64 - 1).to_be_bytes());
        b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
        b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&producer_epoch.to_be_bytes());
        b[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
        b[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&records);
        let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// An uncompressed batch of `count` records of `size` bytes each, no producer id.
    pub fn batch(count: usize, size: usize, base_timestamp: i64) -> Vec<u8> {
        let value = vec![b'x'; size];
        let values: Vec<&[u8]> = (0..count).map(|_| value.as_slice()).collect();
        batch_with(&values, base_timestamp, -1, -1, -1)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn built_batch_validates_and_reports_its_fields() {
        let b = batch_with(&[b"a", b"bb", b"ccc"], 1000, 7, 1, 42);
        let h = validate(&b, true).expect("valid");
        assert_eq!(
            (
                h.records_count,
                h.last_offset_delta,
                h.base_timestamp,
                h.max_timestamp
            ),
            (3, 2, 1000, 1002)
        );
        assert_eq!(
            (
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.last_sequence()
            ),
            (7, 1, 42, 44)
        );
    }

    #[test]
    fn stamping_offset_and_epoch_keeps_crc_valid() {
        let mut b = batch(5, 10, 0);
        stamp_base_offset(&mut b, 123_456);
        stamp_leader_epoch(&mut b, 9);
        let h = validate(&b, true).expect("still valid");
        assert_eq!(
            (h.base_offset, h.partition_leader_epoch, h.last_offset()),
            (123_456, 9, 123_460)
        );
    }

    #[test]
    fn rejects_bad_magic_crc_length_and_count() {
        let good = batch(2, 8, 0);
        let mut bad_magic = good.clone();
        bad_magic[MAGIC] = 1;
        assert_eq!(validate(&bad_magic, true), Err(BatchError::BadMagic(1)));

        let mut bad_crc = good.clone();
        *bad_crc.last_mut().expect("non-empty") ^= 0xff;
        assert!(matches!(
            validate(&bad_crc, true),
            Err(BatchError::CrcMismatch { .. })
        ));

        assert!(matches!(
            validate(&good[..good.len() - 1], true),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            validate(&good[..20], true),
            Err(BatchError::TruncatedHeader { .. })
        ));

        let mut short_len = good.clone();
        short_len[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&5i32.to_be_bytes());
        assert_eq!(
            validate(&short_len, true),
            Err(BatchError::LengthTooSmall(5))
        );

        let mut lying_count = good.clone();
        lying_count[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&9i32.to_be_bytes());
        let crc = crc32c::crc32c(&lying_count[ATTRIBUTES..]);
        lying_count[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate(&lying_count, true),
            Err(BatchError::BadRecordCount { .. })
        ));
        assert!(validate(&lying_count, false).is_ok());
    }

    #[test]
    fn batches_iterator_stops_at_first_bad_batch() {
        let mut buf = batch(1, 4, 0);
        buf.extend(batch(2, 4, 0));
        let second_end = buf.len();
        buf.extend(&[1, 2, 3]);
        let items: Vec<_> = Batches::new(&buf, true).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        assert!(
            matches!(items[2], Err((pos, BatchError::TruncatedHeader { .. })) if pos == second_end)
        );
    }

    #[test]
    fn finds_first_record_at_or_after_timestamp() {
        let mut b = batch_with(&[b"a", b"b", b"c", b"d"], 100, -1, -1, -1);
        stamp_base_offset(&mut b, 50);
        assert_eq!(first_offset_at_or_after(&b, 0), Some((50, 100)));
        assert_eq!(first_offset_at_or_after(&b, 102), Some((52, 102)));
        assert_eq!(first_offset_at_or_after(&b, 103), Some((53, 103)));
        assert_eq!(first_offset_at_or_after(&b, 104), None);
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..200 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = Batches::new(&junk, true).count();
            let _ = first_offset_at_or_after(&junk, 0);
        }
    }
}
