//! An import set brought up to date with its output: while the output runs, its
//! counts come from the last stored page; once the output has ended, the import set
//! ends with it — state, counts, columns and markers from the result — in one
//! transaction that also moves its source's change marker on (only a complete run
//! moves it: after a failed one, the next run reads from the same point again).

use super::pages::{self, Kind};
use super::{DEFAULT_RETENTION_DAYS, Imports, parse_spec};
use crate::dispatch::DispatchError;
use crate::ecc::{ImportSetRow, Record, StoreError};
use openmid_proto::command_output::ChunkContent;
use openmid_proto::ecc::State;
use openmid_proto::file_import::FileImportResponse;
use openmid_proto::import::{ImportColumn, ImportState};
use openmid_proto::ldap::LdapResponse;
use openmid_proto::sql::SqlResponse;
use openmid_proto::time::now_ms;

/// What the result says of a finished run.
#[derive(Debug, Default)]
struct Summary {
    rows: u64,
    errors: u64,
    columns: Vec<ImportColumn>,
    marker_to: Option<String>,
    detail: Option<String>,
}

impl Imports<'_> {
    /// `row` as it stands now (ended, if its output has).
    pub(super) async fn refresh(
        &self,
        mut row: ImportSetRow,
    ) -> Result<ImportSetRow, DispatchError> {
        if row.state != ImportState::Running.as_str() {
            return Ok(row);
        }
        let store = self.dispatcher.store();
        let kind = kind_of(&row)?;
        let Some(output) = store.get_record(&row.output_id).await? else {
            row.state = ImportState::Error.as_str().into();
            row.detail = Some("its ECC output is gone".into());
            return self.end(row, None).await;
        };
        row.rows = self.stored_rows(kind, &output).await?;
        let state = match output.state {
            State::Ready | State::Processing => return Ok(row),
            State::Processed => ImportState::Complete,
            State::Error => ImportState::Error,
            State::Cancelled => ImportState::Cancelled,
        };
        let input = store.input_for(&output.id).await?;
        let summary = self.summary(kind, &output, input.as_ref()).await?;
        let state = match state {
            ImportState::Complete if summary.errors > 0 => ImportState::CompleteWithErrors,
            s => s,
        };
        if state == ImportState::Complete || state == ImportState::CompleteWithErrors {
            row.rows = summary.rows;
        }
        row.state = state.as_str().into();
        row.errors = summary.errors;
        row.columns = Some(serde_json::to_string(&summary.columns).unwrap_or_else(|_| "[]".into()));
        row.detail = output.error.clone().or(summary.detail);
        // The marker moves on only after a run that read everything.
        let marker = match state {
            ImportState::Complete | ImportState::CompleteWithErrors => summary.marker_to.clone(),
            _ => None,
        };
        row.marker_to = summary.marker_to;
        self.end(row, marker).await
    }

    async fn end(
        &self,
        mut row: ImportSetRow,
        marker: Option<String>,
    ) -> Result<ImportSetRow, DispatchError> {
        let store = self.dispatcher.store();
        let now = now_ms();
        let days = match store.get_data_source(&row.source).await? {
            Some(source) => parse_spec(&source)?
                .retention_days
                .unwrap_or(self.dispatcher.import_retention_days()),
            None => self.dispatcher.import_retention_days(),
        };
        let days = if days == 0 {
            DEFAULT_RETENTION_DAYS
        } else {
            days
        };
        row.finished_at = Some(now);
        row.expires_at = Some(now.saturating_add(i64::from(days) * 86_400_000));
        if store.finish_import_set(&row, marker.as_deref()).await? {
            tracing::info!(import_set = %row.id, source = %row.source, state = %row.state, rows = row.rows, errors = row.errors, "import ended");
        }
        store.get_import_set(&row.id).await?.ok_or_else(|| {
            DispatchError::NotFound(format!("import set `{}` was deleted meanwhile", row.id))
        })
    }

    /// Rows stored so far: where the last stored page ends.
    pub(super) async fn stored_rows(
        &self,
        kind: Kind,
        output: &Record,
    ) -> Result<u64, DispatchError> {
        let last = self
            .dispatcher
            .store()
            .last_output_chunk(&output.id, output.attempt)
            .await?;
        match last {
            Some(chunk) => match &chunk.content {
                ChunkContent::Data(data) => {
                    let span =
                        pages::span(kind, chunk.seq, data).map_err(|e| corrupt(&output.id, e))?;
                    Ok(span.first_row + span.rows)
                }
                ChunkContent::Truncated(_) => Ok(0),
            },
            None => Ok(0),
        }
    }

    async fn summary(
        &self,
        kind: Kind,
        output: &Record,
        input: Option<&Record>,
    ) -> Result<Summary, DispatchError> {
        let Some(input) = input else {
            return Ok(Summary::default());
        };
        let mut summary = Summary::default();
        match kind {
            Kind::File => {
                if let Ok(r) = serde_json::from_str::<FileImportResponse>(&input.payload) {
                    summary.rows = r.rows;
                    summary.errors = r.errors;
                    summary.columns = r
                        .columns
                        .into_iter()
                        .map(|c| ImportColumn {
                            name: c.name,
                            type_name: serde_json::to_value(c.column_type)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_else(|| "string".into()),
                        })
                        .collect();
                    if r.truncated {
                        summary.detail = Some("stopped at max_rows".into());
                    }
                }
            }
            Kind::Sql => {
                if let Ok(r) = serde_json::from_str::<SqlResponse>(&input.payload) {
                    summary.rows = r.rows;
                    summary.columns = r
                        .columns
                        .into_iter()
                        .map(|c| ImportColumn {
                            name: c.name,
                            type_name: c.json,
                        })
                        .collect();
                    if r.truncated {
                        summary.detail = Some("stopped at max_rows".into());
                    }
                    summary.marker_to = self.last_sql_key(output).await?;
                }
            }
            Kind::Ldap => {
                if let Ok(r) = serde_json::from_str::<LdapResponse>(&input.payload) {
                    summary.rows = r.entries;
                    summary.marker_to = r.marker_max;
                    if r.truncated {
                        summary.detail = Some("stopped at max_entries".into());
                    }
                    summary.columns = self.ldap_columns(output).await?;
                }
            }
        }
        Ok(summary)
    }

    /// The first keyset value (the marker) of the last stored SQL page.
    async fn last_sql_key(&self, output: &Record) -> Result<Option<String>, DispatchError> {
        let Some(chunk) = self
            .dispatcher
            .store()
            .last_output_chunk(&output.id, output.attempt)
            .await?
        else {
            return Ok(None);
        };
        let ChunkContent::Data(data) = &chunk.content else {
            return Ok(None);
        };
        let page =
            pages::decode(Kind::Sql, chunk.seq, data, None).map_err(|e| corrupt(&output.id, e))?;
        Ok(page
            .last_key
            .and_then(|key| key.into_iter().next())
            .and_then(|v| match v {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }))
    }

    /// Every attribute the entries of an LDAP run hold, in the order first seen;
    /// `array` where some entry had several values, `string` otherwise.
    async fn ldap_columns(&self, output: &Record) -> Result<Vec<ImportColumn>, DispatchError> {
        let mut columns: Vec<ImportColumn> = Vec::new();
        let mut after = None;
        loop {
            let chunks = self
                .dispatcher
                .store()
                .output_chunks(&output.id, output.attempt, after, 64, 8 * 1024 * 1024)
                .await?;
            let Some(last) = chunks.last() else {
                return Ok(columns);
            };
            after = Some(last.seq);
            for chunk in &chunks {
                let ChunkContent::Data(data) = &chunk.content else {
                    continue;
                };
                let page = pages::decode(Kind::Ldap, chunk.seq, data, None)
                    .map_err(|e| corrupt(&output.id, e))?;
                for row in &page.rows {
                    for (name, value) in row {
                        let multi = value.is_array();
                        match columns.iter_mut().find(|c| &c.name == name) {
                            Some(c) if multi => c.type_name = "array".into(),
                            Some(_) => {}
                            None => columns.push(ImportColumn {
                                name: name.clone(),
                                type_name: if multi { "array" } else { "string" }.into(),
                            }),
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn kind_of(row: &ImportSetRow) -> Result<Kind, DispatchError> {
    Kind::parse(&row.kind).ok_or_else(|| {
        DispatchError::Store(StoreError::Corrupt {
            id: row.id.clone(),
            detail: format!("import set kind `{}`", row.kind),
        })
    })
}

pub(super) fn corrupt(id: &str, e: pages::BadPage) -> DispatchError {
    DispatchError::Store(StoreError::Corrupt {
        id: id.to_string(),
        detail: e.to_string(),
    })
}
