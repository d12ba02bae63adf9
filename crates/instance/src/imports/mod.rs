//! Import Sets on the instance: data sources, their runs, and the import sets the
//! runs fill.
//!
//! A run is one ECC output of the source's topic (`FileImport`, `LDAPProbe`,
//! `JDBCProbe`), built by the same code as the action of that kind, so a data source
//! is exactly what an action would send, plus a schedule and a change marker. The
//! rows never get copied: an import set's rows are the pages its output streamed
//! (the `rows` chunks), which the ECC queue already stores exactly once per page and
//! carries over when a run moves to another MID of a cluster ([`Contract::resume`]).
//! The import set adds the run's summary — state, counts, columns, markers — which
//! [`finish`] fills once the output ends.
//!
//! [`Contract::resume`]: openmid_proto::probe::Contract::resume

mod finish;
pub mod pages;
mod rows;
mod runs;
pub mod schedule;
pub mod scheduler;

pub use rows::{Download, DownloadFormat, download};

use crate::dispatch::{DispatchError, Dispatcher, invalid};
use crate::ecc::{DataSourceRow, ImportSetRow};
use openmid_proto::import::{
    DataSource, DataSourceInfo, ImportColumn, ImportSet, ImportState, check_name,
};
use openmid_proto::time::{now_ms, rfc3339};
use schedule::Compiled;

/// Days an import set is kept after it ended when its source says nothing.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `POST /api/v1/data-sources/{name}/run` or `ctl import run`.
    Manual,
    /// The source's schedule.
    Schedule,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Schedule => "schedule",
        }
    }
}

/// Import Sets, over the dispatcher's store.
pub struct Imports<'a> {
    pub(crate) dispatcher: &'a Dispatcher,
}

impl Dispatcher {
    /// Data sources and import sets.
    pub fn imports(&self) -> Imports<'_> {
        Imports { dispatcher: self }
    }
}

impl Imports<'_> {
    /// Makes (`create`) or replaces a data source. It is checked as a run would be —
    /// its alias, credential and read are turned into the output a run queues — so a
    /// source that is saved can run.
    pub async fn put_data_source(
        &self,
        source: DataSource,
        create: bool,
    ) -> Result<DataSourceInfo, DispatchError> {
        source
            .validate()
            .map_err(|e| invalid(&e.field, e.message))?;
        let compiled = source
            .schedule
            .as_ref()
            .map(Compiled::new)
            .transpose()
            .map_err(|e| invalid(&e.field, e.message))?;
        runs::build(self.dispatcher, &source, None).await?;
        let store = self.dispatcher.store();
        let current = store.get_data_source(&source.name).await?;
        match (&current, create) {
            (Some(_), true) => {
                return Err(DispatchError::Conflict(format!(
                    "a data source named `{}` exists: PUT /api/v1/data-sources/{} to change it",
                    source.name, source.name
                )));
            }
            (None, false) => {
                return Err(DispatchError::NotFound(format!(
                    "no data source named `{}`",
                    source.name
                )));
            }
            _ => {}
        }
        // The marker reached so far holds for the same read by the same marker only:
        // a new statement, filter or marker starts from the beginning again.
        let marker_value = match &current {
            Some(row) => {
                let before = parse_spec(row)?;
                let same = before.marker == source.marker
                    && serde_json::to_value(&before.read).ok()
                        == serde_json::to_value(&source.read).ok();
                row.marker_value.clone().filter(|_| same)
            }
            None => None,
        };
        let now = now_ms();
        let next_run_at = match &compiled {
            Some(c) if source.enabled => c.next_after(now, Some(now)),
            _ => None,
        };
        let row = DataSourceRow {
            name: source.name.clone(),
            spec: serde_json::to_string(&source).map_err(|e| invalid("body", e.to_string()))?,
            created_at: current.as_ref().map_or(now, |c| c.created_at),
            updated_at: now,
            next_run_at,
            schedule_anchor: compiled.as_ref().map(|_| now),
            marker_value,
            last_import_set: None,
        };
        let row = store.put_data_source(&row).await?;
        info(row)
    }

    /// One data source.
    pub async fn get_data_source(&self, name: &str) -> Result<DataSourceInfo, DispatchError> {
        info(self.source_row(name).await?)
    }

    /// Every data source, by name.
    pub async fn list_data_sources(&self) -> Result<Vec<DataSourceInfo>, DispatchError> {
        self.dispatcher
            .store()
            .list_data_sources()
            .await?
            .into_iter()
            .map(info)
            .collect()
    }

    /// Deletes a data source. Its import sets stay until their retention; a run in
    /// progress goes on.
    pub async fn delete_data_source(&self, name: &str) -> Result<(), DispatchError> {
        if self.dispatcher.store().delete_data_source(name).await? {
            Ok(())
        } else {
            Err(DispatchError::NotFound(format!(
                "no data source named `{name}`"
            )))
        }
    }

    /// Starts a run of `name`: one at a time per source — while one runs, another is
    /// refused (409) so two runs never fill two import sets from one moment's data.
    pub async fn run(&self, name: &str, trigger: Trigger) -> Result<ImportSet, DispatchError> {
        let row = self.source_row(name).await?;
        let source = parse_spec(&row)?;
        let store = self.dispatcher.store();
        for running in store
            .list_import_sets(Some(name), Some(ImportState::Running.as_str()), None, 5)
            .await?
        {
            let now = self.refresh(running).await?;
            if now.state == ImportState::Running.as_str() {
                return Err(DispatchError::Conflict(format!(
                    "import set {} of `{name}` is still running: wait for it, or cancel its output {}",
                    now.id, now.output_id
                )));
            }
        }
        let marker_from = source.marker.as_ref().and(row.marker_value.clone());
        let id = format!("imp_{}", uuid::Uuid::now_v7().simple());
        let mut output = runs::build(self.dispatcher, &source, marker_from.as_deref()).await?;
        output.source = Some(format!("import:{name}"));
        output.correlator = Some(id.clone());
        let record = self.dispatcher.submit(output).await?;
        let set = ImportSetRow {
            id,
            source: name.to_string(),
            kind: source.read.kind().to_string(),
            trigger: trigger.as_str().to_string(),
            output_id: record.id.clone(),
            state: ImportState::Running.as_str().to_string(),
            started_at: now_ms(),
            finished_at: None,
            expires_at: None,
            rows: 0,
            errors: 0,
            columns: None,
            marker_from,
            marker_to: None,
            detail: None,
        };
        if let Err(e) = store.insert_import_set(&set).await {
            // Without its import set nobody would see the run's rows: withdraw it.
            let _ = self.dispatcher.cancel(&record.id).await;
            return Err(e.into());
        }
        tracing::info!(source = %name, import_set = %set.id, output = %record.id, trigger = trigger.as_str(), "import started");
        show(set)
    }

    /// One import set, brought up to date with its output.
    pub async fn import_set(&self, id: &str) -> Result<ImportSet, DispatchError> {
        let row = self.set_row(id).await?;
        show(self.refresh(row).await?)
    }

    /// Import sets, newest first.
    pub async fn import_sets(
        &self,
        source: Option<&str>,
        state: Option<ImportState>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ImportSet>, DispatchError> {
        let rows = self
            .dispatcher
            .store()
            .list_import_sets(source, state.map(ImportState::as_str), before, limit)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(show(self.refresh(row).await?)?);
        }
        Ok(out)
    }

    async fn source_row(&self, name: &str) -> Result<DataSourceRow, DispatchError> {
        check_name(name).map_err(|e| invalid(&e.field, e.message))?;
        self.dispatcher
            .store()
            .get_data_source(name)
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no data source named `{name}`")))
    }

    async fn set_row(&self, id: &str) -> Result<ImportSetRow, DispatchError> {
        self.dispatcher
            .store()
            .get_import_set(id)
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no import set `{id}`")))
    }
}

fn parse_spec(row: &DataSourceRow) -> Result<DataSource, DispatchError> {
    serde_json::from_str(&row.spec).map_err(|e| {
        DispatchError::Store(crate::ecc::StoreError::Corrupt {
            id: row.name.clone(),
            detail: format!("data source spec: {e}"),
        })
    })
}

fn info(row: DataSourceRow) -> Result<DataSourceInfo, DispatchError> {
    Ok(DataSourceInfo {
        source: parse_spec(&row)?,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
        next_run_at: row.next_run_at.map(rfc3339),
        marker_value: row.marker_value,
        last_import_set: row.last_import_set,
    })
}

fn show(row: ImportSetRow) -> Result<ImportSet, DispatchError> {
    let corrupt = |detail: String| {
        DispatchError::Store(crate::ecc::StoreError::Corrupt {
            id: row.id.clone(),
            detail,
        })
    };
    let state = ImportState::parse(&row.state)
        .ok_or_else(|| corrupt(format!("import set state `{}`", row.state)))?;
    let columns: Vec<ImportColumn> = match &row.columns {
        Some(text) => serde_json::from_str(text).map_err(|e| corrupt(format!("columns: {e}")))?,
        None => Vec::new(),
    };
    Ok(ImportSet {
        id: row.id,
        source: row.source,
        kind: row.kind,
        trigger: row.trigger,
        output_id: row.output_id,
        state,
        started_at: rfc3339(row.started_at),
        finished_at: row.finished_at.map(rfc3339),
        rows: row.rows,
        errors: row.errors,
        columns,
        marker_from: row.marker_from,
        marker_to: row.marker_to,
        detail: row.detail,
    })
}
