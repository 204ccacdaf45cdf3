//! Input shaping: turns raw fuzzer bytes into inputs that get past the cheap
//! checks (API key and version ranges, batch length and CRC), so that mutations
//! spend their time in the code behind those checks.

use kafka_protocol::messages::ApiKey;
use skiff_broker::log::batch::{HEADER_LEN, LOG_OVERHEAD};
use skiff_broker::protocol::versions::SUPPORTED;

/// Offset of the CRC field in a v2 batch, and of the region it covers.
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const BATCH_LENGTH: usize = 8;

/// In the key selector: send the key and version bytes as they are (unknown
/// APIs, unsupported versions).
pub const RAW_FRAME: u16 = 0x8000;
/// In the version selector: recompute the CRCs of produced batches.
pub const FIX_CRC: u16 = 0x4000;

/// A request frame built from a fuzz input, and what to do with it.
#[derive(Debug)]
pub struct Frame {
    /// The frame as the connection would pass it to `dispatch` (no length prefix).
    pub bytes: Vec<u8>,
    /// The API, when the key is one the broker serves.
    pub api: Option<ApiKey>,
    pub version: i16,
    /// Recompute the CRCs of record batches in the request.
    pub fix_crc: bool,
}

/// Input layout: `[key selector: u16][version selector: u16][rest of the frame]`.
///
/// A selector that already names a served API or a version in its range is kept,
/// so a valid request is its own seed; anything else is mapped into range.
/// `RAW_FRAME` in the key selector sends both fields unmapped.
pub fn frame(data: &[u8]) -> Option<Frame> {
    if data.len() < 4 {
        return None;
    }
    let key_sel = u16::from_be_bytes([data[0], data[1]]);
    let ver_sel = u16::from_be_bytes([data[2], data[3]]);
    let mut bytes = data.to_vec();
    if key_sel & RAW_FRAME != 0 {
        bytes[0] &= 0x7f;
        let key = i16::from_be_bytes([bytes[0], bytes[1]]);
        return Some(Frame {
            api: ApiKey::try_from(key).ok(),
            version: i16::from_be_bytes([bytes[2], bytes[3]]),
            bytes,
            fix_crc: false,
        });
    }
    let (api, min, max) = SUPPORTED
        .iter()
        .copied()
        .find(|&(api, _, _)| api as i16 as u16 == key_sel)
        .unwrap_or(SUPPORTED[key_sel as usize % SUPPORTED.len()]);
    let v = (ver_sel & !FIX_CRC) as i16;
    let version = if (min..=max).contains(&v) {
        v
    } else {
        min + v % (max - min + 1)
    };
    bytes[0..2].copy_from_slice(&(api as i16).to_be_bytes());
    bytes[2..4].copy_from_slice(&version.to_be_bytes());
    Some(Frame {
        bytes,
        api: Some(api),
        version,
        fix_crc: ver_sel & FIX_CRC != 0,
    })
}

/// Walks `buf` as concatenated v2 batches and makes each one's framing valid:
/// with `fix_len`, a length field that is too small or runs past the end is set
/// to "the rest of the buffer"; with `fix_crc`, the CRC is recomputed. Every
/// other field (magic, counts, offsets, timestamps, records) is left to the
/// fuzzer. Stops at the first batch whose length cannot be used.
pub fn fix_batches(buf: &mut [u8], fix_len: bool, fix_crc: bool) {
    let mut pos = 0usize;
    while buf.len() - pos >= HEADER_LEN {
        let rest = buf.len() - pos;
        let len_at = pos + BATCH_LENGTH;
        let stated = i32::from_be_bytes([
            buf[len_at],
            buf[len_at + 1],
            buf[len_at + 2],
            buf[len_at + 3],
        ]);
        let fits =
            stated >= (HEADER_LEN - LOG_OVERHEAD) as i32 && LOG_OVERHEAD + stated as usize <= rest;
        let size = if fits {
            LOG_OVERHEAD + stated as usize
        } else if fix_len {
            let whole = (rest - LOG_OVERHEAD) as i32;
            buf[len_at..len_at + 4].copy_from_slice(&whole.to_be_bytes());
            rest
        } else {
            return;
        };
        if fix_crc {
            let crc = crc32c::crc32c(&buf[pos + ATTRIBUTES..pos + size]);
            buf[pos + CRC..pos + CRC + 4].copy_from_slice(&crc.to_be_bytes());
        }
        pos += size;
    }
}

/// A cursor over fuzz input bytes that yields zeros once exhausted.
#[derive(Debug)]
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_selector_is_kept_and_an_invalid_one_is_mapped_into_range() {
        // Metadata (3) v12 stays as it is.
        let f = frame(&[0, 3, 0, 12, 0, 0, 0, 1]).expect("frame");
        assert_eq!((f.api, f.version), (Some(ApiKey::Metadata), 12));
        // Key 0x0777 is not an API: mapped to one, with the version in its range.
        let f = frame(&[0x07, 0x77, 0x3f, 0xff, 0, 0, 0, 1]).expect("frame");
        let api = f.api.expect("served api");
        let (min, max) = skiff_broker::protocol::versions::range(api).expect("range");
        assert!((min..=max).contains(&f.version));
        assert_eq!(&f.bytes[0..2], &(api as i16).to_be_bytes());
        // Raw frames keep their bytes.
        let f = frame(&[0x80, 3, 0x7f, 0, 0, 0, 0, 1]).expect("frame");
        assert_eq!(&f.bytes[..4], &[0, 3, 0x7f, 0]);
    }

    #[test]
    fn fixing_makes_a_damaged_batch_valid_again() {
        let mut b = skiff_broker::log::batch::testing::batch(3, 10, 1000);
        b[70] ^= 0xff;
        assert!(skiff_broker::log::batch::validate(&b, true).is_err());
        fix_batches(&mut b, false, true);
        skiff_broker::log::batch::validate(&b, true).expect("valid after fix");
        b.extend_from_slice(&[0u8; 80]);
        fix_batches(&mut b, true, true);
        let n = skiff_broker::log::batch::Batches::new(&b, false).count();
        assert_eq!(n, 2);
    }
}
