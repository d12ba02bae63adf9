//! Credentials and aliases.

use crate::*;

impl ApiClient {
    /// Creates a credential.
    pub async fn create_credential(
        &self,
        credential: &NewCredential,
    ) -> Result<CredentialInfo, ClientError> {
        self.send(Method::POST, "api/v1/credentials", credential)
            .await
    }

    /// Replaces a credential (a secret sent as `***` keeps its stored value).
    pub async fn put_credential(
        &self,
        credential: &NewCredential,
    ) -> Result<CredentialInfo, ClientError> {
        let path = format!("api/v1/credentials/{}", encode(&credential.name));
        self.send(Method::PUT, &path, credential).await
    }

    /// Lists credentials (redacted).
    pub async fn list_credentials(&self) -> Result<Vec<CredentialInfo>, ClientError> {
        self.get("api/v1/credentials").await
    }

    /// One credential (redacted).
    pub async fn get_credential(&self, name: &str) -> Result<CredentialInfo, ClientError> {
        self.get(&format!("api/v1/credentials/{}", encode(name)))
            .await
    }

    /// Deletes a credential no alias uses.
    pub async fn delete_credential(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("api/v1/credentials/{}", encode(name)))
            .await
    }

    /// Creates an alias.
    pub async fn create_alias(&self, alias: &Alias) -> Result<AliasInfo, ClientError> {
        self.send(Method::POST, "api/v1/aliases", alias).await
    }

    /// Replaces an alias.
    pub async fn put_alias(&self, alias: &Alias) -> Result<AliasInfo, ClientError> {
        let path = format!("api/v1/aliases/{}", encode(&alias.name));
        self.send(Method::PUT, &path, alias).await
    }

    /// Lists aliases.
    pub async fn list_aliases(&self) -> Result<Vec<AliasInfo>, ClientError> {
        self.get("api/v1/aliases").await
    }

    /// One alias.
    pub async fn get_alias(&self, name: &str) -> Result<AliasInfo, ClientError> {
        self.get(&format!("api/v1/aliases/{}", encode(name))).await
    }

    /// Deletes an alias.
    pub async fn delete_alias(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("api/v1/aliases/{}", encode(name)))
            .await
    }
}
