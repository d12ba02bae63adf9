//! The `command_output` table on PostgreSQL: chunks of a running command's output,
//! written only while the posting MID holds the attempt (checked under a lock on the
//! output's row, so a lease ending meanwhile cannot interleave).

use super::to_db;
use crate::ecc::{ChunksStored, StoreError};
use openmid_proto::command_output::{ChunkContent, DecodedChunk, OutputStream, Truncated};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

/// Stores `chunks` if `mid_name` holds `attempt` of `output_id`.
pub(super) async fn store(
    c: &mut PgConnection,
    mid_name: &str,
    output_id: &str,
    attempt: u32,
    chunks: &[DecodedChunk],
) -> Result<ChunksStored, StoreError> {
    let held = sqlx::query(
        "SELECT attempt, claimed_by FROM ecc WHERE id = $1 AND queue = 'output' AND state = 'processing' FOR SHARE",
    )
    .bind(output_id)
    .fetch_optional(&mut *c)
    .await?;
    let current = match held {
        Some(row) if row.try_get::<Option<String>, _>(1)?.as_deref() == Some(mid_name) => {
            u32::try_from(row.try_get::<i64, _>(0)?).ok()
        }
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
    let (mut stored, mut duplicate) = (0, 0);
    for chunk in chunks {
        let (data, dropped) = match &chunk.content {
            ChunkContent::Data(bytes) => (Some(bytes.as_slice()), None),
            ChunkContent::Truncated(t) => (None, Some(to_db(t.dropped_bytes))),
        };
        let n = sqlx::query(
            "INSERT INTO command_output (output_id, attempt, seq, stream, byte_offset, data, dropped_bytes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(output_id)
        .bind(i64::from(attempt))
        .bind(to_db(chunk.seq))
        .bind(chunk.stream.as_str())
        .bind(to_db(chunk.offset))
        .bind(data)
        .bind(dropped)
        .execute(&mut *c)
        .await?
        .rows_affected();
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
pub(super) async fn read(
    c: &mut PgConnection,
    output_id: &str,
    attempt: u32,
    after: Option<u64>,
    limit: u32,
    max_bytes: usize,
) -> Result<Vec<DecodedChunk>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, stream, byte_offset, data, dropped_bytes FROM command_output WHERE output_id = $1 AND attempt = $2 AND seq > $3 ORDER BY seq LIMIT $4",
    )
    .bind(output_id)
    .bind(i64::from(attempt))
    .bind(after.map_or(-1, to_db))
    .bind(i64::from(limit))
    .fetch_all(c)
    .await?;
    let mut out = Vec::new();
    let mut bytes = 0;
    for row in &rows {
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
pub(super) async fn last(
    c: &mut PgConnection,
    output_id: &str,
    attempt: u32,
) -> Result<Option<DecodedChunk>, StoreError> {
    sqlx::query(
        "SELECT seq, stream, byte_offset, data, dropped_bytes FROM command_output WHERE output_id = $1 AND attempt = $2 ORDER BY seq DESC LIMIT 1",
    )
    .bind(output_id)
    .bind(i64::from(attempt))
    .fetch_optional(c)
    .await?
    .map(|row| decode(output_id, &row))
    .transpose()
}

/// One row of `SELECT seq, stream, byte_offset, data, dropped_bytes`.
fn decode(output_id: &str, row: &PgRow) -> Result<DecodedChunk, StoreError> {
    let stream: String = row.try_get(1)?;
    let data: Option<Vec<u8>> = row.try_get(3)?;
    let content = match data {
        Some(data) => ChunkContent::Data(data),
        None => ChunkContent::Truncated(Truncated {
            dropped_bytes: from_i64(row.try_get::<Option<i64>, _>(4)?.unwrap_or(0)),
        }),
    };
    Ok(DecodedChunk {
        stream: OutputStream::parse(&stream).ok_or_else(|| StoreError::Corrupt {
            id: output_id.to_string(),
            detail: format!("command_output.stream `{stream}`"),
        })?,
        seq: from_i64(row.try_get(0)?),
        offset: from_i64(row.try_get(2)?),
        content,
    })
}

/// Moves the chunks earlier attempts stored onto `attempt` (a resumed topic continues
/// after them) and returns the data of the last one. Where two attempts hold one
/// `seq`, the newer one's chunk is kept, and one the new attempt already has stays.
pub(super) async fn carry(
    c: &mut PgConnection,
    output_id: &str,
    attempt: u32,
) -> Result<Option<Vec<u8>>, StoreError> {
    let attempt = i64::from(attempt);
    sqlx::query(
        "UPDATE command_output o SET attempt = $1 WHERE o.output_id = $2 AND o.attempt < $1 \
         AND NOT EXISTS (SELECT 1 FROM command_output n WHERE n.output_id = o.output_id AND n.seq = o.seq \
         AND n.attempt > o.attempt AND n.attempt <= $1)",
    )
    .bind(attempt)
    .bind(output_id)
    .execute(&mut *c)
    .await?;
    sqlx::query("DELETE FROM command_output WHERE output_id = $1 AND attempt < $2")
        .bind(output_id)
        .bind(attempt)
        .execute(&mut *c)
        .await?;
    Ok(sqlx::query_scalar(
        "SELECT data FROM command_output WHERE output_id = $1 AND attempt = $2 AND data IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .bind(output_id)
    .bind(attempt)
    .fetch_optional(c)
    .await?)
}

/// Deletes the chunks of one output (all attempts), with the output.
pub(super) async fn purge(c: &mut PgConnection, output_id: &str) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM command_output WHERE output_id = $1")
            .bind(output_id)
            .execute(c)
            .await?
            .rows_affected(),
    )
}

fn from_i64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
