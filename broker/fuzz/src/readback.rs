//! Reading a whole log back through its public API, checking as it goes.

use skiff_broker::log::Log;
use skiff_broker::log::batch::{self, BatchHeader};

/// One batch as read back.
#[derive(Debug, Clone)]
pub struct ReadBatch {
    pub header: BatchHeader,
    pub bytes: Vec<u8>,
}

/// A whole log as read back.
#[derive(Debug, Default)]
pub struct ReadAll {
    pub batches: Vec<ReadBatch>,
    /// Offset from which the log holds no batch although the log end is higher
    /// (a consumer there gets empty fetches forever).
    pub empty_from: Option<i64>,
}

/// Reads every batch from the log start to the log end with `Log::read` and
/// checks what a consumer relies on: each read succeeds, returns whole valid
/// batches (a byte limit may cut only the last one), and the batches cover the
/// offsets in ascending order up to the log end. `Err` says what broke.
pub fn read_all(log: &Log, max_bytes: usize) -> Result<ReadAll, String> {
    let leo = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut out: Vec<ReadBatch> = Vec::new();
    while offset < leo {
        let slice = match log.read(offset, max_bytes, leo, true) {
            Ok(Some(s)) => s,
            Ok(None) => {
                let mut later = 0usize;
                log.for_each_batch(offset, |_| later += 1)
                    .map_err(|e| format!("walking batches from {offset}: {e}"))?;
                if later == 0 {
                    return Ok(ReadAll {
                        batches: out,
                        empty_from: Some(offset),
                    });
                }
                return Err(format!(
                    "read at offset {offset} returned nothing below the log end {leo}, \
                     yet {later} batches follow"
                ));
            }
            Err(e) => return Err(format!("read at offset {offset} (log end {leo}): {e}")),
        };
        let mut bytes = Vec::new();
        slice
            .read_into(&mut bytes)
            .map_err(|e| format!("read_into at offset {offset}: {e}"))?;
        let mut whole = 0usize;
        for item in batch::Batches::new(&bytes, false) {
            let (pos, header) = match item {
                Ok(ok) => ok,
                // A byte limit may cut the last batch of a slice short.
                Err((_, batch::BatchError::Truncated { .. })) if whole > 0 => break,
                Err((pos, e)) => {
                    return Err(format!(
                        "read at offset {offset}: batch at slice position {pos} is invalid: {e}"
                    ));
                }
            };
            let size = header.size().map_err(|e| e.to_string())?;
            if let Some(prev) = out.last()
                && header.base_offset <= prev.header.last_offset()
            {
                return Err(format!(
                    "batch at base offset {} does not follow the previous batch ending at {}",
                    header.base_offset,
                    prev.header.last_offset()
                ));
            }
            if whole == 0 && header.last_offset() < offset {
                return Err(format!(
                    "read at offset {offset} started with a batch ending at {}",
                    header.last_offset()
                ));
            }
            out.push(ReadBatch {
                header,
                bytes: bytes[pos..pos + size].to_vec(),
            });
            whole += 1;
        }
        if whole == 0 {
            return Err(format!("read at offset {offset} returned no whole batch"));
        }
        let last = out.last().map(|b| b.header.last_offset()).unwrap_or(offset);
        if last >= leo {
            return Err(format!(
                "read returned a batch ending at {last}, at or past the log end {leo}"
            ));
        }
        offset = last + 1;
    }
    Ok(ReadAll {
        batches: out,
        empty_from: None,
    })
}
