//! Enrollment tokens, MID Servers and clusters.

use crate::*;

impl ApiClient {
    /// Creates an enrollment token.
    pub async fn create_enrollment_token(
        &self,
        req: &NewEnrollmentToken,
    ) -> Result<EnrollmentToken, ClientError> {
        let (_, t) = self
            .call(
                Method::POST,
                "api/v1/enrollment-tokens",
                Some(req),
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(t)
    }

    /// Lists MIDs.
    pub async fn list_mids(&self) -> Result<Vec<MidInfo>, ClientError> {
        #[derive(serde::Deserialize)]
        struct List {
            mids: Vec<MidInfo>,
        }
        let (_, l): (_, List) = self
            .call::<(), _>(Method::GET, "api/v1/mids", None, Self::DEFAULT_TIMEOUT)
            .await?;
        Ok(l.mids)
    }

    /// Shows one MID.
    pub async fn get_mid(&self, name: &str) -> Result<MidInfo, ClientError> {
        let (_, m) = self
            .call::<(), _>(
                Method::GET,
                &format!("api/v1/mids/{}", encode(name)),
                None,
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(m)
    }

    /// Validates a MID.
    pub async fn validate_mid(&self, name: &str) -> Result<MidInfo, ClientError> {
        self.mid_action(name, "validate").await
    }

    /// Runs an admin action on a MID: `validate`, `pause`, `resume`, `drain`,
    /// `invalidate` or `rekey`.
    pub async fn mid_action(&self, name: &str, action: &str) -> Result<MidInfo, ClientError> {
        let (_, m) = self
            .call::<(), _>(
                Method::POST,
                &format!("api/v1/mids/{}/{}", encode(name), encode(action)),
                None,
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(m)
    }

    /// Deletes an invalidated (or never validated) MID so its name can enroll again.
    pub async fn delete_mid(&self, name: &str) -> Result<(), ClientError> {
        let _: (_, serde::de::IgnoredAny) = self
            .call::<(), _>(
                Method::DELETE,
                &format!("api/v1/mids/{}", encode(name)),
                None,
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    /// The instance nodes sharing the store (`GET /api/v1/nodes`).
    pub async fn list_nodes(&self) -> Result<Vec<openmid_proto::api::InstanceNode>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Nodes {
            nodes: Vec<openmid_proto::api::InstanceNode>,
        }
        let (_, n): (_, Nodes) = self
            .call::<(), _>(Method::GET, "api/v1/nodes", None, Self::DEFAULT_TIMEOUT)
            .await?;
        Ok(n.nodes)
    }

    /// A MID's status changes, newest first.
    pub async fn mid_history(&self, name: &str) -> Result<Vec<StatusChange>, ClientError> {
        #[derive(serde::Deserialize)]
        struct History {
            changes: Vec<StatusChange>,
        }
        let (_, h): (_, History) = self
            .call::<(), _>(
                Method::GET,
                &format!("api/v1/mids/{}/history", encode(name)),
                None,
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(h.changes)
    }

    /// Sets what a MID offers (capabilities, applications, IP ranges).
    pub async fn update_mid_profile(
        &self,
        name: &str,
        update: &ProfileUpdate,
    ) -> Result<MidInfo, ClientError> {
        let (_, m) = self
            .call(
                Method::PATCH,
                &format!("api/v1/mids/{}", encode(name)),
                Some(update),
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(m)
    }

    /// Creates a cluster.
    pub async fn create_cluster(&self, cluster: &NewCluster) -> Result<ClusterInfo, ClientError> {
        let (_, c) = self
            .call(
                Method::POST,
                "api/v1/clusters",
                Some(cluster),
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(c)
    }

    /// Replaces a cluster's kind and members.
    pub async fn put_cluster(&self, cluster: &NewCluster) -> Result<ClusterInfo, ClientError> {
        let (_, c) = self
            .call(
                Method::PUT,
                &format!("api/v1/clusters/{}", encode(&cluster.name)),
                Some(cluster),
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(c)
    }

    /// Lists clusters.
    pub async fn list_clusters(&self) -> Result<Vec<ClusterInfo>, ClientError> {
        #[derive(serde::Deserialize)]
        struct List {
            clusters: Vec<ClusterInfo>,
        }
        let (_, l): (_, List) = self
            .call::<(), _>(Method::GET, "api/v1/clusters", None, Self::DEFAULT_TIMEOUT)
            .await?;
        Ok(l.clusters)
    }

    /// Shows a cluster.
    pub async fn get_cluster(&self, name: &str) -> Result<ClusterInfo, ClientError> {
        let (_, c) = self
            .call::<(), _>(
                Method::GET,
                &format!("api/v1/clusters/{}", encode(name)),
                None,
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(c)
    }

    /// Deletes a cluster.
    pub async fn delete_cluster(&self, name: &str) -> Result<(), ClientError> {
        let _: (_, serde::de::IgnoredAny) = self
            .call::<(), _>(
                Method::DELETE,
                &format!("api/v1/clusters/{}", encode(name)),
                None,
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(())
    }
}
