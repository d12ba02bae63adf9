//! The blob store: request and response bodies too large for a JSON payload, kept as
//! files under `data_dir/blobs/`. A blob is written from a stream chunk by chunk (its
//! SHA-256 computed on the way) and served back as a stream, so no body is ever held
//! whole in memory. Each blob `ID` is two files: `ID.blob` (the bytes) and `ID.json`
//! (size, digest, creation time, owner). Ids are 256 random bits: knowing one is the
//! only way to name a blob, and the MID session checks more than that.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use openmid_proto::blob::{BlobRef, is_valid_blob_id};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The body is larger than the configured cap; nothing was kept.
    #[error(
        "the body exceeds max_blob_bytes ({limit} bytes); nothing was stored (raise max_blob_bytes in the instance config to accept it)"
    )]
    TooLarge {
        /// The cap.
        limit: u64,
    },
    /// The body was empty: a blob holds some bytes (an empty request body needs none).
    #[error("the request body is empty: send the blob's bytes as the body")]
    Empty,
    /// The sender's body stream failed (connection dropped); nothing was kept.
    #[error("reading the body failed: {0}")]
    Body(String),
    /// File access failed.
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
}

/// What is kept beside a blob's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobMeta {
    /// Length in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// Written at (epoch ms).
    pub created_at: i64,
    /// For a response body a MID uploaded: the output it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_id: Option<String>,
}

/// The blob store of one instance.
pub struct BlobStore {
    dir: PathBuf,
    max_bytes: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn new_id() -> Result<String, BlobError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| BlobError::Io(std::io::Error::other("no random numbers")))?;
    Ok(hex::encode(bytes))
}

impl BlobStore {
    /// A store in `dir` (made at the first write) refusing blobs over `max_bytes`.
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self { dir, max_bytes }
    }

    /// The cap.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn data_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.blob"))
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes a new blob from `body`, chunk by chunk: temp file, fsync, metadata, rename.
    /// Past the cap the partial file is deleted and [`BlobError::TooLarge`] returned.
    pub async fn write<S, E>(
        &self,
        body: S,
        output_id: Option<String>,
    ) -> Result<BlobRef, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            crate::private_fs::create_dir_all(&dir)?;
            crate::private_fs::restrict(&dir, crate::private_fs::DIR_MODE)
        })
        .await
        .map_err(std::io::Error::other)??;
        let id = new_id()?;
        let part = self.dir.join(format!("{id}.part"));
        let written = self.write_part(&part, body).await;
        let (size, sha256) = match written {
            Ok((0, _)) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(BlobError::Empty);
            }
            Ok(done) => done,
            Err(e) => {
                // A refused or broken upload leaves nothing behind.
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e);
            }
        };
        let meta = BlobMeta {
            size,
            sha256: sha256.clone(),
            created_at: now_ms(),
            output_id,
        };
        let meta_bytes = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
        let meta_tmp = self.dir.join(format!("{id}.json.tmp"));
        let finish = async {
            let mut f = crate::private_fs::new_file_options()
                .open(&meta_tmp)
                .await?;
            f.write_all(&meta_bytes).await?;
            f.sync_all().await?;
            drop(f);
            tokio::fs::rename(&meta_tmp, self.meta_path(&id)).await?;
            tokio::fs::rename(&part, self.data_path(&id)).await?;
            tokio::fs::File::open(&self.dir).await?.sync_all().await
        };
        if let Err(e) = finish.await {
            for p in [&part, &meta_tmp, &self.meta_path(&id), &self.data_path(&id)] {
                let _ = tokio::fs::remove_file(p).await;
            }
            return Err(e.into());
        }
        Ok(BlobRef { id, size, sha256 })
    }

    async fn write_part<S, E>(&self, part: &Path, mut body: S) -> Result<(u64, String), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file = crate::private_fs::new_file_options().open(part).await?;
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > self.max_bytes {
                return Err(BlobError::TooLarge {
                    limit: self.max_bytes,
                });
            }
            digest.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        Ok((size, hex::encode(digest.finish().as_ref())))
    }

    /// A blob's metadata, or None when there is no such blob.
    pub async fn meta(&self, id: &str) -> Result<Option<BlobMeta>, BlobError> {
        if !is_valid_blob_id(id) {
            return Ok(None);
        }
        match tokio::fs::read(self.meta_path(id)).await {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a blob for reading: its description and the open file.
    pub async fn open(&self, id: &str) -> Result<Option<(BlobRef, tokio::fs::File)>, BlobError> {
        let Some(meta) = self.meta(id).await? else {
            return Ok(None);
        };
        match tokio::fs::File::open(self.data_path(id)).await {
            Ok(file) => Ok(Some((
                BlobRef {
                    id: id.to_string(),
                    size: meta.size,
                    sha256: meta.sha256,
                },
                file,
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes blobs (and leftovers of broken uploads) last written before `age` ago.
    /// Returns how many files went.
    pub async fn purge_older_than(&self, age: Duration) -> Result<u64, BlobError> {
        let dir = self.dir.clone();
        let purged = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let Some(cutoff) = SystemTime::now().checked_sub(age) else {
                return Ok(0);
            };
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            };
            let mut purged = 0;
            for entry in entries {
                let entry = entry?;
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff);
                if old && std::fs::remove_file(entry.path()).is_ok() {
                    purged += 1;
                }
            }
            Ok(purged)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn blobs_round_trip_and_the_cap_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::new(dir.path().join("blobs"), 8);
        let blob = store
            .write(chunks(&[b"abc", b"def"]), None)
            .await
            .expect("write");
        assert_eq!(blob.size, 6);
        assert_eq!(
            blob.sha256,
            "bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721"
        );
        let (found, _file) = store.open(&blob.id).await.expect("open").expect("found");
        assert_eq!(found, blob);
        assert!(store.open("../x").await.expect("open").is_none());

        let err = store
            .write(chunks(&[b"12345", b"67890"]), None)
            .await
            .expect_err("too large");
        assert!(matches!(err, BlobError::TooLarge { limit: 8 }));
        let files = std::fs::read_dir(dir.path().join("blobs"))
            .expect("dir")
            .count();
        assert_eq!(files, 2, "only the first blob's two files remain");

        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            store.purge_older_than(Duration::ZERO).await.expect("purge"),
            2
        );
    }
}
