//! A file import turned into an output: a file on a MID's host (the action names the
//! MID, cluster or `mid.auto`, and the MID's own `[policy.file] allow_dirs` decides
//! whether it may be read), or a file at a URL under an HTTP alias, fetched with the
//! alias's headers, credential and CA, through the alias's MIDs.

use super::Connections;
use super::target_url::join_url;
use crate::error::{DispatchError, invalid};
use openmid_proto::alias::ConnectionKind;
use openmid_proto::api::NewOutput;
use openmid_proto::ecc::{Priority, Topic};
use openmid_proto::file_import::{FileImportAction, FileImportRequest, FileSource};
use std::collections::BTreeMap;

impl Connections<'_> {
    /// Turns a file import action into an output.
    pub async fn file_output(&self, action: FileImportAction) -> Result<NewOutput, DispatchError> {
        let (agent, application, source, label) = match (&action.path, &action.alias) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "path",
                    "give `path` (a file on the MID's host) or `alias` with `url_path`, not both",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "path",
                    "give `path` (a file on the MID's host, with `agent`) or `alias` (an http alias) with `url_path`",
                ));
            }
            (Some(path), None) => {
                if action.url_path.is_some() {
                    return Err(invalid("url_path", "goes with `alias`, not with `path`"));
                }
                let agent = action.agent.clone().ok_or_else(|| {
                    invalid(
                        "agent",
                        "a file on a MID's host needs the MID that reads it: mid.server.NAME, mid.cluster.NAME or mid.auto",
                    )
                })?;
                (
                    agent,
                    None,
                    FileSource::Path { path: path.clone() },
                    path.clone(),
                )
            }
            (None, Some(alias_name)) => {
                if action.agent.is_some() {
                    return Err(invalid(
                        "agent",
                        "comes from the alias's execution settings: drop it",
                    ));
                }
                let (alias, credential) = self.alias_for(alias_name, ConnectionKind::Http).await?;
                let url = join_url(
                    &alias.base_url,
                    action.url_path.as_deref(),
                    &BTreeMap::new(),
                )?;
                let label = format!(
                    "{}:{}",
                    alias.name,
                    action.url_path.as_deref().unwrap_or("/")
                );
                (
                    alias.execution.agent(),
                    alias.execution.application.clone(),
                    FileSource::Url {
                        url,
                        headers: alias.headers.clone(),
                        credential,
                        ca_pem: alias.ca_pem.clone(),
                    },
                    label,
                )
            }
        };
        let request = FileImportRequest {
            source,
            format: action.format,
            encoding: action.encoding,
            page_rows: action.page_rows,
            max_rows: action.max_rows,
            timeout_ms: action.timeout_ms,
            resume: None,
        };
        Ok(NewOutput {
            durability: Default::default(),
            agent,
            topic: Topic::FileImport,
            name: Some(label.chars().take(200).collect()),
            source: Some("api:actions/file_import".into()),
            payload: openmid_proto::payload::Payload::encode(&request)
                .map_err(|e| invalid("format", e.to_string()))?,
            priority: Some(Priority::Interactive),
            correlator: action.correlator,
            max_attempts: None,
            at_most_once: action.at_most_once,
            application,
        })
    }
}
