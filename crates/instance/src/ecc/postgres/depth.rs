//! Queue depth on PostgreSQL: one grouped count.

use super::PgStore;
use crate::ecc::StoreError;
use crate::ecc::depth::{DepthStore, QUEUE_DEPTH_SQL, QueueDepth, decode};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl DepthStore for PgStore {
    async fn queue_depth(&self) -> Result<Vec<QueueDepth>, StoreError> {
        let rows = sqlx::query(QUEUE_DEPTH_SQL).fetch_all(self.pool()).await?;
        let rows = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<Vec<(String, String, i64)>, StoreError>>()?;
        decode(rows)
    }
}
