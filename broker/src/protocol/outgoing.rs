//! A response on its way to the socket: encoded bytes, with holes where a
//! fetch's record batches go straight from the segment file to the socket
//! (`sendfile(2)`), so serving a fetch never copies the log through memory.
//!
//! The `kafka-protocol` crate encodes the whole response; only the body of
//! each records field is left out. A handler that wants a file range sent
//! puts a *stand-in* in the records field: a `Bytes` of the right length that
//! points into [`STAND_IN`], a zero region nothing ever reads. The encoder's
//! buffer ([`HoleyBuf`]) recognises a stand-in by its address when the
//! encoder hands it over, and records a hole there instead of copying it. The
//! holes are then filled, in order, by the file ranges the handler attached.

use std::ops::Range;
use std::os::fd::AsFd;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;

use crate::log::LogSlice;

/// The largest records body that can be sent from its file; a larger one is
/// copied into the response instead. Fetches of up to 1 MiB per partition are
/// the clients' default; this is far above it.
pub const STAND_IN_LEN: usize = 64 << 20;

/// Zero bytes that stand in for record batches while a response is encoded.
/// Never read: only addresses into it are compared. As zero-initialised
/// static data it costs address space, not memory.
static STAND_IN: [u8; STAND_IN_LEN] = [0; STAND_IN_LEN];

/// A stand-in for `len` bytes of a file, or `None` if `len` is too large (or 0).
pub fn stand_in(len: usize) -> Option<Bytes> {
    (len > 0 && len <= STAND_IN_LEN).then(|| Bytes::from_static(&STAND_IN[..len]))
}

fn is_stand_in(s: &[u8]) -> bool {
    let base = STAND_IN.as_ptr() as usize;
    let start = s.as_ptr() as usize;
    !s.is_empty() && start >= base && start < base + STAND_IN_LEN
}

/// One piece of a response body.
#[derive(Debug, Clone)]
pub enum Part {
    Bytes(Bytes),
    File(LogSlice),
}

/// A response body: its parts in order, and their total length.
#[derive(Debug, Clone)]
pub struct Outgoing {
    parts: Vec<Part>,
    len: usize,
}

impl From<Bytes> for Outgoing {
    fn from(bytes: Bytes) -> Self {
        Self {
            len: bytes.len(),
            parts: vec![Part::Bytes(bytes)],
        }
    }
}

impl Outgoing {
    /// The body's length in bytes (the frame's length prefix).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole body in memory, file ranges read in (tests, the fuzz harness).
    pub fn into_bytes(self) -> std::io::Result<Bytes> {
        if let [Part::Bytes(b)] = &self.parts[..] {
            return Ok(b.clone());
        }
        let mut out = Vec::with_capacity(self.len);
        for part in &self.parts {
            match part {
                Part::Bytes(b) => out.extend_from_slice(b),
                Part::File(slice) => slice.read_into(&mut out)?,
            }
        }
        Ok(Bytes::from(out))
    }

    /// Writes the frame (length prefix, then the body) to the socket. A file
    /// range that was truncated underneath fails the write: the frame's length
    /// was promised, so the connection cannot go on.
    pub async fn write_frame(&self, writer: &mut OwnedWriteHalf) -> std::io::Result<()> {
        let prefix = (self.len as u32).to_be_bytes();
        if let [Part::Bytes(_)] = &self.parts[..] {
            return write_parts(writer, &prefix, &self.parts).await;
        }
        // Corked, the small pieces between file ranges leave in full
        // segments with the file data rather than as packets of their own.
        let _ = rustix::net::sockopt::set_tcp_cork(writer.as_ref(), true);
        let result = write_parts(writer, &prefix, &self.parts).await;
        let _ = rustix::net::sockopt::set_tcp_cork(writer.as_ref(), false);
        result
    }
}

async fn write_parts(
    writer: &mut OwnedWriteHalf,
    prefix: &[u8; 4],
    parts: &[Part],
) -> std::io::Result<()> {
    let mut pending_prefix = Some(prefix);
    for part in parts {
        match (part, pending_prefix.take()) {
            // The prefix and a small first piece go in one write; a large one
            // is written after it rather than copied.
            (Part::Bytes(b), Some(prefix)) if b.len() < 64 * 1024 => {
                let mut buf = Vec::with_capacity(4 + b.len());
                buf.extend_from_slice(prefix);
                buf.extend_from_slice(b);
                writer.write_all(&buf).await?;
            }
            (part, prefix) => {
                if let Some(prefix) = prefix {
                    writer.write_all(prefix).await?;
                }
                match part {
                    Part::Bytes(b) => writer.write_all(b).await?,
                    Part::File(slice) => send_file(writer, slice).await?,
                }
            }
        }
    }
    Ok(())
}

/// Sends a file range with `sendfile(2)`, waiting whenever the socket is full.
async fn send_file(writer: &mut OwnedWriteHalf, slice: &LogSlice) -> std::io::Result<()> {
    let Some(file) = slice.file.fd() else {
        // Only ranges of files with descriptors are sent this way (see `read_all`
        // in `partition::fetch`); copy anything else.
        let mut buf = Vec::with_capacity(slice.len);
        slice.read_into(&mut buf)?;
        return writer.write_all(&buf).await;
    };
    let socket = writer.as_ref();
    let end = slice.position + slice.len as u64;
    let mut pos = slice.position;
    while pos < end {
        socket.writable().await?;
        let sent = socket.try_io(Interest::WRITABLE, || {
            let mut offset = pos;
            let want = usize::try_from(end - pos).unwrap_or(usize::MAX);
            rustix::fs::sendfile(socket.as_fd(), file, Some(&mut offset), want)
                .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment was truncated while it was being sent",
                ));
            }
            Ok(n) => pos += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The encoder's buffer: bytes as usual, but a stand-in leaves a hole.
#[derive(Debug, Default)]
pub struct HoleyBuf {
    buf: BytesMut,
    /// Where each hole is in `buf`, and how long it is, in order.
    holes: Vec<(usize, usize)>,
    hole_bytes: usize,
}

impl HoleyBuf {
    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// The plain buffer, for encoders that want a `BytesMut` (nothing written
    /// through it leaves a hole).
    pub fn bytes_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The offset in `buf` of the encoder's (logical) offset `logical`, which
    /// counts the holes as if they were filled.
    fn physical(&self, logical: usize) -> usize {
        let mut skipped = 0;
        for &(at, len) in &self.holes {
            if at + skipped >= logical {
                break;
            }
            skipped += len;
        }
        logical.saturating_sub(skipped)
    }

    /// Fills the holes with `files`, in order. Fails if they do not match one
    /// for one in number and length (a handler's bug, not a client's).
    pub fn finish(self, files: Vec<LogSlice>) -> Result<Outgoing, String> {
        if self.holes.len() != files.len() {
            return Err(format!(
                "{} record holes but {} file ranges",
                self.holes.len(),
                files.len()
            ));
        }
        let len = self.buf.len() + self.hole_bytes;
        let mut buf = self.buf.freeze();
        let mut parts = Vec::with_capacity(2 * files.len() + 1);
        let mut done = 0;
        for ((at, hole), file) in self.holes.into_iter().zip(files) {
            if file.len != hole {
                return Err(format!(
                    "a record hole of {hole} bytes for a file range of {}",
                    file.len
                ));
            }
            parts.push(Part::Bytes(buf.split_to(at - done)));
            done = at;
            parts.push(Part::File(file));
        }
        if !buf.is_empty() {
            parts.push(Part::Bytes(buf));
        }
        Ok(Outgoing { parts, len })
    }
}

// SAFETY: every method forwards to `BytesMut`, whose contract holds; only
// `put_slice` differs, and it either forwards too or writes nothing.
#[allow(unsafe_code)]
unsafe impl BufMut for HoleyBuf {
    fn remaining_mut(&self) -> usize {
        self.buf.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller guarantees `cnt` bytes of `chunk_mut` were initialised.
        unsafe { self.buf.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.buf.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if is_stand_in(src) {
            self.holes.push((self.buf.len(), src.len()));
            self.hole_bytes += src.len();
        } else {
            self.buf.put_slice(src);
        }
    }
}

impl ByteBufMut for HoleyBuf {
    fn offset(&self) -> usize {
        self.buf.len() + self.hole_bytes
    }

    fn seek(&mut self, offset: usize) {
        let at = self.physical(offset);
        self.buf.resize(at, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let (start, end) = (self.physical(r.start), self.physical(r.end));
        &mut self.buf[start..end]
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::protocol::Encodable;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::log::{FileSystem, StdFs};

    /// A segment-like file holding `data`, and a slice of it.
    fn file_with(dir: &std::path::Path, data: &[u8], range: Range<usize>) -> LogSlice {
        let path = dir.join("00000000000000000000.log");
        let file = StdFs.open_segment(&path, true).expect("open");
        file.write_all_at(data, 0).expect("write");
        LogSlice {
            file,
            position: range.start as u64,
            len: range.len(),
            first_offset: 0,
        }
    }

    fn response(records: [Bytes; 3]) -> FetchResponse {
        let partitions = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(7)
                    .with_records(Some(r))
            })
            .collect();
        FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default().with_partitions(partitions),
        ])
    }

    #[test]
    fn stand_ins_leave_holes_that_the_files_fill_at_every_version() {
        let dir = tempfile::tempdir().expect("dir");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let first = file_with(dir.path(), &data, 10..70_010);
        let second = LogSlice {
            position: 90_000,
            len: 200,
            ..first.clone()
        };
        let plain = Bytes::from_static(b"copied, not sent from a file");
        for version in [4, 11, 12, 16] {
            let mut expected = BytesMut::new();
            response([
                Bytes::copy_from_slice(&data[10..70_010]),
                plain.clone(),
                Bytes::copy_from_slice(&data[90_000..90_200]),
            ])
            .encode(&mut expected, version)
            .expect("encode");

            let mut buf = HoleyBuf::with_capacity(64);
            response([
                stand_in(first.len).expect("stand-in"),
                plain.clone(),
                stand_in(second.len).expect("stand-in"),
            ])
            .encode(&mut buf, version)
            .expect("encode");
            assert!(buf.buf.len() < 500, "no record bytes were copied");
            let outgoing = buf
                .finish(vec![first.clone(), second.clone()])
                .expect("holes match");
            assert_eq!(outgoing.len(), expected.len(), "v{version}");
            assert_eq!(outgoing.into_bytes().expect("read"), expected, "v{version}");
        }
    }

    #[test]
    fn holes_and_files_that_do_not_match_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let slice = file_with(dir.path(), &[1; 100], 0..100);
        let encode = || {
            let mut buf = HoleyBuf::default();
            buf.put_u8(1);
            buf.put_slice(&stand_in(100).expect("stand-in"));
            buf.put_u8(2);
            buf
        };
        assert!(encode().finish(vec![]).is_err(), "a hole without a file");
        let short = LogSlice {
            len: 99,
            ..slice.clone()
        };
        assert!(encode().finish(vec![short]).is_err(), "lengths differ");
        let ok = encode().finish(vec![slice]).expect("match");
        assert_eq!(ok.len(), 102);
        assert!(stand_in(0).is_none() && stand_in(STAND_IN_LEN + 1).is_none());
    }

    #[test]
    fn offsets_count_holes_as_filled() {
        let mut buf = HoleyBuf::default();
        buf.put_slice(b"abc");
        buf.put_slice(&stand_in(10).expect("stand-in"));
        assert_eq!(buf.offset(), 13);
        let gap = buf.put_gap(2);
        buf.put_u8(9);
        buf.gap_buf(gap).copy_from_slice(b"xy");
        assert_eq!(&buf.buf[..], b"abcxy\x09");
    }

    async fn socket_pair() -> (OwnedWriteHalf, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"));
        let (client, accepted) = tokio::join!(client, listener.accept());
        // Dropping the read half leaves the socket open for writing.
        let (_, write) = accepted.expect("accept").0.into_split();
        (write, client.expect("connect"))
    }

    #[tokio::test]
    async fn a_frame_with_file_ranges_arrives_whole_through_a_socket() {
        let dir = tempfile::tempdir().expect("dir");
        // More than a socket buffer holds, so sendfile has to wait for the reader.
        let data: Vec<u8> = (0..8_000_000u32).map(|i| (i % 253) as u8).collect();
        let slice = file_with(dir.path(), &data, 3..7_999_000);
        let mut buf = HoleyBuf::default();
        buf.put_slice(b"head");
        buf.put_slice(&stand_in(slice.len).expect("stand-in"));
        buf.put_slice(b"tail");
        let outgoing = buf.finish(vec![slice]).expect("match");
        let (mut writer, mut reader) = socket_pair().await;
        let send = tokio::spawn(async move {
            outgoing.write_frame(&mut writer).await.expect("send");
        });
        let mut frame = vec![0; 4 + 4 + 7_998_997 + 4];
        reader.read_exact(&mut frame).await.expect("read");
        send.await.expect("sender");
        assert_eq!(&frame[..4], &((frame.len() - 4) as u32).to_be_bytes());
        assert_eq!(&frame[4..8], b"head");
        assert!(frame[8..frame.len() - 4] == data[3..7_999_000]);
        assert_eq!(&frame[frame.len() - 4..], b"tail");
    }

    #[tokio::test]
    async fn a_file_truncated_before_it_is_sent_fails_the_write() {
        let dir = tempfile::tempdir().expect("dir");
        let slice = file_with(dir.path(), &[7; 10_000], 0..10_000);
        let mut buf = HoleyBuf::default();
        buf.put_slice(b"head");
        buf.put_slice(&stand_in(slice.len).expect("stand-in"));
        let file = slice.file.clone();
        let outgoing = buf.finish(vec![slice]).expect("match");
        file.set_len(5_000).expect("truncate");
        let (mut writer, _reader) = socket_pair().await;
        let err = outgoing
            .write_frame(&mut writer)
            .await
            .expect_err("truncated");
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
