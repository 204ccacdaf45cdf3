//! Kafka framing: a 4-byte big-endian length, then the request. A frame
//! larger than `socket.request.max.bytes` is refused before any buffer is
//! grown for it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

/// A connection-level framing failure; the connection is closed.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("request of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge { size: i64, max: usize },
    #[error("negative frame length {0}")]
    Negative(i32),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Length-prefixed frames, bounded by `max` bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max: usize,
}

impl FrameCodec {
    /// Frames of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if len < 0 {
            return Err(FrameError::Negative(len));
        }
        let len = len as usize;
        if len > self.max {
            return Err(FrameError::TooLarge {
                size: len as i64,
                max: self.max,
            });
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(len)))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.reserve(4 + item.len());
        dst.put_u32(item.len() as u32);
        dst.extend_from_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_oversize_is_refused_before_buffering() {
        let mut codec = FrameCodec::new(10);
        let mut buf = BytesMut::from(&[0, 0, 0, 3, b'a', b'b'][..]);
        assert!(codec.decode(&mut buf).expect("partial").is_none());
        buf.extend_from_slice(&[b'c', 0, 0]);
        assert_eq!(
            &codec.decode(&mut buf).expect("frame").expect("some")[..],
            b"abc"
        );
        let mut huge = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            codec.decode(&mut huge),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(
            huge.capacity() < 1024,
            "no buffer was grown for the oversized frame"
        );
        let mut neg = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert!(matches!(
            codec.decode(&mut neg),
            Err(FrameError::Negative(-2))
        ));
    }
}
