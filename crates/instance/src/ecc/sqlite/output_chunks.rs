//! The `command_output` table: chunks of a running command's output, written only
//! while the posting MID holds the attempt, read by followers in `seq` order.

use crate::ecc::{ChunksStored, StoreError};
use openmid_proto::command_output::{ChunkContent, DecodedChunk, OutputStream, Truncated};
use rusqlite::{Connection, OptionalExtension, params};

/// Stores `chunks` if `mid_name` holds `attempt` of `output_id` (in the caller's
/// transaction, so a lease lapsing meanwhile cannot interleave).
pub(super) fn store(
    c: &Connection,
    mid_name: &str,
    output_id: &str,
    attempt: u32,
    chunks: &[DecodedChunk],
) -> Result<ChunksStored, StoreError> {
    let held: Option<(i64, Option<String>)> = c
        .prepare_cached(
            "SELECT attempt, claimed_by FROM ecc WHERE id = ? AND queue = 'output' AND state = 'processing'",
        )?
        .query_row([output_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let current = match held {
        Some((current, Some(by))) if by == mid_name => u32::try_from(current).ok(),
        _ => {
            return Ok(ChunksStored::NotHeld {
                current_attempt: None,
            });
        }
    };
    if current != Some(attempt) {
        return Ok(ChunksStored::NotHeld {
            current_attempt: current,
        });
    }
    let mut insert = c.prepare_cached(
        "INSERT OR IGNORE INTO command_output (output_id, attempt, seq, stream, byte_offset, data, dropped_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?;
    let (mut stored, mut duplicate) = (0, 0);
    for chunk in chunks {
        let (data, dropped) = match &chunk.content {
            ChunkContent::Data(bytes) => (Some(bytes.as_slice()), None),
            ChunkContent::Truncated(t) => (None, Some(to_i64(t.dropped_bytes))),
        };
        let n = insert.execute(params![
            output_id,
            i64::from(attempt),
            to_i64(chunk.seq),
            chunk.stream.as_str(),
            to_i64(chunk.offset),
            data,
            dropped,
        ])?;
        if n == 0 {
            duplicate += 1;
        } else {
            stored += 1;
        }
    }
    Ok(ChunksStored::Stored { stored, duplicate })
}

/// Chunks of one attempt after `after`, ascending, within `limit` rows and about
/// `max_bytes` of data.
pub(super) fn read(
    c: &Connection,
    output_id: &str,
    attempt: u32,
    after: Option<u64>,
    limit: u32,
    max_bytes: usize,
) -> Result<Vec<DecodedChunk>, StoreError> {
    let after = after.map_or(-1, to_i64);
    let mut stmt = c.prepare_cached(
        "SELECT seq, stream, byte_offset, data, dropped_bytes FROM command_output WHERE output_id = ? AND attempt = ? AND seq > ? ORDER BY seq LIMIT ?",
    )?;
    let mut rows = stmt.query(params![
        output_id,
        i64::from(attempt),
        after,
        i64::from(limit)
    ])?;
    let mut out = Vec::new();
    let mut bytes = 0;
    while let Some(row) = rows.next()? {
        let chunk = decode(output_id, row)?;
        if let ChunkContent::Data(data) = &chunk.content {
            bytes += data.len();
        }
        out.push(chunk);
        if bytes >= max_bytes {
            break;
        }
    }
    Ok(out)
}

/// The last chunk of one attempt.
pub(super) fn last(
    c: &Connection,
    output_id: &str,
    attempt: u32,
) -> Result<Option<DecodedChunk>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, stream, byte_offset, data, dropped_bytes FROM command_output WHERE output_id = ? AND attempt = ? ORDER BY seq DESC LIMIT 1",
    )?;
    let mut rows = stmt.query(params![output_id, i64::from(attempt)])?;
    match rows.next()? {
        Some(row) => Ok(Some(decode(output_id, row)?)),
        None => Ok(None),
    }
}

/// One row of `SELECT seq, stream, byte_offset, data, dropped_bytes`.
fn decode(output_id: &str, row: &rusqlite::Row<'_>) -> Result<DecodedChunk, StoreError> {
    let stream: String = row.get(1)?;
    let data: Option<Vec<u8>> = row.get(3)?;
    let content = match data {
        Some(data) => ChunkContent::Data(data),
        None => ChunkContent::Truncated(Truncated {
            dropped_bytes: from_i64(row.get::<_, Option<i64>>(4)?.unwrap_or(0)),
        }),
    };
    Ok(DecodedChunk {
        stream: OutputStream::parse(&stream).ok_or_else(|| StoreError::Corrupt {
            id: output_id.to_string(),
            detail: format!("command_output.stream `{stream}`"),
        })?,
        seq: from_i64(row.get(0)?),
        offset: from_i64(row.get(2)?),
        content,
    })
}

/// Moves the chunks earlier attempts of `output_id` stored onto `attempt`, for a topic
/// whose new attempt continues where the lost one stopped (a paged SQL read): they
/// stay the output's, and the new attempt numbers its chunks after them. Returns the
/// data of the last one, what the new attempt continues after.
pub(super) fn carry(
    c: &Connection,
    output_id: &str,
    attempt: u32,
) -> Result<Option<Vec<u8>>, StoreError> {
    // A chunk the new attempt already has (a retried claim) is kept as it is.
    c.prepare_cached(
        "UPDATE OR IGNORE command_output SET attempt = ? WHERE output_id = ? AND attempt < ?",
    )?
    .execute(params![i64::from(attempt), output_id, i64::from(attempt)])?;
    c.prepare_cached("DELETE FROM command_output WHERE output_id = ? AND attempt < ?")?
        .execute(params![output_id, i64::from(attempt)])?;
    Ok(c
        .prepare_cached(
            "SELECT data FROM command_output WHERE output_id = ? AND attempt = ? AND data IS NOT NULL ORDER BY seq DESC LIMIT 1",
        )?
        .query_row(params![output_id, i64::from(attempt)], |r| r.get(0))
        .optional()?)
}

/// Deletes the chunks of one output (all attempts), with the output.
pub(super) fn purge(c: &Connection, output_id: &str) -> Result<u64, StoreError> {
    Ok(
        c.prepare_cached("DELETE FROM command_output WHERE output_id = ?")?
            .execute([output_id])? as u64,
    )
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_i64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
