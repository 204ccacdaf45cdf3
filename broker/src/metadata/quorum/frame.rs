//! Framing of the controller listener: a 4-byte big-endian length, then a
//! serde_json body.
//!
//! Owns: reading and writing one frame, and refusing frames over
//! [`MAX_FRAME`] before allocating for them. Must not: know what the bodies
//! mean (that is `message`), or retry anything.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted in either direction (64 MiB).
pub const MAX_FRAME: usize = 64 << 20;

/// A frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge { len: usize },
    #[error("connection closed in the middle of a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("frame i/o: {0}")]
    Io(#[from] io::Error),
}

/// Reads one frame body. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated { got, want: 4 })
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge { len });
    }
    let mut body = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = r.read(&mut body[got..]).await?;
        if n == 0 {
            return Err(FrameError::Truncated { got, want: len });
        }
        got += n;
    }
    Ok(Some(body))
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> Result<(), FrameError> {
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge { len: body.len() });
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge { len: body.len() })?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_and_detects_clean_eof() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"a\":1}").await.unwrap();
        write_frame(&mut buf, b"").await.unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"");
        assert!(read_frame(&mut r).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn refuses_oversized_length_before_reading_body() {
        let buf = (MAX_FRAME as u32 + 1).to_be_bytes();
        let mut r = &buf[..];
        assert!(matches!(
            read_frame(&mut r).await,
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn truncated_frames_are_errors() {
        let mut r = &[0u8, 0][..];
        assert!(matches!(
            read_frame(&mut r).await,
            Err(FrameError::Truncated { .. })
        ));
        let mut r = &[0u8, 0, 0, 5, b'x'][..];
        assert!(matches!(
            read_frame(&mut r).await,
            Err(FrameError::Truncated { got: 1, want: 5 })
        ));
    }
}
