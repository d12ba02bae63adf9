//! Queue depth on SQLite: one grouped count on a read connection.

use super::*;
use crate::ecc::depth::{DepthStore, QUEUE_DEPTH_SQL, QueueDepth, decode};

#[async_trait]
impl DepthStore for SqliteStore {
    async fn queue_depth(&self) -> Result<Vec<QueueDepth>, StoreError> {
        let rows: Vec<(String, String, i64)> = self.read(|c| {
            Ok(c.prepare_cached(QUEUE_DEPTH_SQL)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?)
        })?;
        decode(rows)
    }
}
