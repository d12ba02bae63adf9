//! Data sources and import sets.

use crate::*;
use openmid_proto::import::{
    DataSource, DataSourceInfo, ImportErrorsPage, ImportRowsPage, ImportSet,
};

impl ApiClient {
    /// Creates a data source.
    pub async fn create_data_source(
        &self,
        source: &DataSource,
    ) -> Result<DataSourceInfo, ClientError> {
        self.send(Method::POST, "api/v1/data-sources", source).await
    }

    /// Replaces a data source.
    pub async fn put_data_source(
        &self,
        source: &DataSource,
    ) -> Result<DataSourceInfo, ClientError> {
        let path = format!("api/v1/data-sources/{}", encode(&source.name));
        self.send(Method::PUT, &path, source).await
    }

    /// Every data source.
    pub async fn list_data_sources(&self) -> Result<Vec<DataSourceInfo>, ClientError> {
        self.get("api/v1/data-sources").await
    }

    /// One data source.
    pub async fn get_data_source(&self, name: &str) -> Result<DataSourceInfo, ClientError> {
        self.get(&format!("api/v1/data-sources/{}", encode(name)))
            .await
    }

    /// Deletes a data source (its import sets stay until their retention).
    pub async fn delete_data_source(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("api/v1/data-sources/{}", encode(name)))
            .await
    }

    /// Starts a run of a data source: its import set, `running`.
    pub async fn run_data_source(&self, name: &str) -> Result<ImportSet, ClientError> {
        let path = format!("api/v1/data-sources/{}/run", encode(name));
        self.send(Method::POST, &path, &serde_json::json!({})).await
    }

    /// Import sets, newest first; of one source when given.
    pub async fn list_import_sets(
        &self,
        source: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ImportSet>, ClientError> {
        let mut path = format!("api/v1/import-sets?limit={limit}");
        if let Some(source) = source {
            path.push_str(&format!("&source={}", encode(source)));
        }
        self.get(&path).await
    }

    /// One import set.
    pub async fn get_import_set(&self, id: &str) -> Result<ImportSet, ClientError> {
        self.get(&format!("api/v1/import-sets/{}", encode(id)))
            .await
    }

    /// Up to `limit` rows after row number `after` (0: from the first).
    pub async fn import_rows(
        &self,
        id: &str,
        after: u64,
        limit: u32,
    ) -> Result<ImportRowsPage, ClientError> {
        self.get(&format!(
            "api/v1/import-sets/{}/rows?after={after}&limit={limit}",
            encode(id)
        ))
        .await
    }

    /// The source records a run refused.
    pub async fn import_errors(&self, id: &str) -> Result<ImportErrorsPage, ClientError> {
        self.get(&format!("api/v1/import-sets/{}/errors", encode(id)))
            .await
    }

    /// Waits until import set `id` has ended (polling every `every`), at most
    /// `timeout`; gives it as it ended, or as it stands at the timeout.
    pub async fn wait_import_set(
        &self,
        id: &str,
        every: Duration,
        timeout: Duration,
    ) -> Result<ImportSet, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let set = self.get_import_set(id).await?;
            if set.state.is_final() || tokio::time::Instant::now() >= deadline {
                return Ok(set);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Downloads import set `id` as `format` (`csv` or `jsonl`) into the file `to`,
    /// chunk by chunk; returns the bytes written.
    pub async fn download_import_set(
        &self,
        id: &str,
        format: &str,
        to: &std::path::Path,
    ) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let url = self.blob_url(&format!(
            "api/v1/import-sets/{}/download?format={}",
            encode(id),
            encode(format)
        ))?;
        let transport = |source: reqwest::Error| ClientError::Transport {
            url: url.to_string(),
            source: source.without_url(),
        };
        let file_error = |source| ClientError::File {
            path: to.to_path_buf(),
            source,
        };
        let mut resp = self
            .http
            .get(url.clone())
            .bearer_auth(self.token.expose())
            .timeout(BLOB_TIMEOUT)
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(answer_json::<serde::de::IgnoredAny>(&url, resp)
                .await
                .err()
                .unwrap_or_else(|| ClientError::Unexpected {
                    url: url.to_string(),
                    detail: "an error status with a success body".into(),
                }));
        }
        let mut file = tokio::fs::File::create(to).await.map_err(file_error)?;
        let mut size = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(file_error)?;
        }
        file.flush().await.map_err(file_error)?;
        Ok(size)
    }
}
