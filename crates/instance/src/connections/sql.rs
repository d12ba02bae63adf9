//! A SQL action turned into an output through its alias: the alias says which database
//! (`postgres://host[:port]/database`, `mysql://…`), with which credential, TLS and
//! options, through which MIDs; the action says what to run and how to page it.

use super::Connections;
use crate::error::{DispatchError, invalid};
use openmid_proto::alias::{Alias, ConnectionKind};
use openmid_proto::api::NewOutput;
use openmid_proto::ecc::{Priority, Topic};
use openmid_proto::sql::{SqlAction, SqlDriver, SqlRequest};

/// Credential types a jdbc alias may name.
pub const SQL_CREDENTIALS: [&str; 1] = ["database"];

/// Where a jdbc alias points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// The driver, from the URL's scheme.
    pub driver: SqlDriver,
    /// Host name or address.
    pub host: String,
    /// Port, when the URL gives one.
    pub port: Option<u16>,
    /// The database's name.
    pub database: String,
}

impl Connections<'_> {
    /// Turns a SQL action into an output.
    pub async fn sql_output(&self, action: SqlAction) -> Result<NewOutput, DispatchError> {
        let (alias, credential) = self.alias_for(&action.alias, ConnectionKind::Jdbc).await?;
        let credential = self
            .required_credential(&alias, credential, &SQL_CREDENTIALS)
            .await?;
        let db = database(&alias.base_url)?;
        let request = SqlRequest {
            driver: db.driver,
            host: db.host,
            port: db.port,
            database: db.database,
            credential,
            tls: alias.tls.unwrap_or_default(),
            ca_pem: alias.ca_pem.clone(),
            options: alias.options.clone(),
            statement: action.statement,
            params: action.params,
            write: action.write,
            page_rows: action.page_rows,
            max_rows: action.max_rows,
            keyset: action.keyset,
            resume: None,
            timeout_ms: action.timeout_ms.or(alias.timeout_ms),
        };
        let name: String = format!("{}: {}", alias.name, request.statement.trim())
            .chars()
            .take(200)
            .collect();
        Ok(NewOutput {
            durability: Default::default(),
            agent: alias.execution.agent(),
            topic: Topic::JDBCProbe,
            name: Some(name),
            source: Some("api:actions/sql".into()),
            payload: openmid_proto::payload::Payload::encode(&request)
                .map_err(|e| invalid("statement", e.to_string()))?,
            priority: Some(Priority::Interactive),
            correlator: action.correlator,
            max_attempts: None,
            at_most_once: action.at_most_once,
            application: alias.execution.application.clone(),
        })
    }
}

/// Reads `postgres://host[:port]/database` (also `postgresql://`) or
/// `mysql://host[:port]/database` (also `mariadb://`).
pub fn database(base_url: &str) -> Result<Database, DispatchError> {
    let url = url::Url::parse(base_url)
        .map_err(|e| invalid("base_url", format!("`{base_url}` is not a URL: {e}")))?;
    let driver = match url.scheme() {
        "postgres" | "postgresql" => SqlDriver::Postgres,
        "mysql" | "mariadb" => SqlDriver::Mysql,
        other => {
            return Err(invalid(
                "base_url",
                format!(
                    "scheme `{other}`: a jdbc alias's base_url is postgres://host[:port]/database or mysql://host[:port]/database"
                ),
            ));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "base_url",
            "must not carry a user or password: put them in a credential",
        ));
    }
    if url.query().is_some() {
        return Err(invalid(
            "base_url",
            "put connection settings in `options` and `tls`, not in the URL's query",
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(invalid("base_url", "has no host")),
    };
    let database = url.path().trim_start_matches('/').to_string();
    if database.is_empty() || database.contains('/') {
        return Err(invalid(
            "base_url",
            "name the database as the URL's path: postgres://host/DATABASE",
        ));
    }
    Ok(Database {
        driver,
        host,
        port: url.port(),
        database,
    })
}

/// The checks of a jdbc alias's own fields.
pub fn check_sql_alias(alias: &Alias) -> Result<(), DispatchError> {
    database(&alias.base_url)?;
    for (name, value) in &alias.options {
        if name.is_empty() || name.contains(['\0', '=']) || value.contains('\0') {
            return Err(invalid(
                "options",
                format!("`{name}` is not a usable option name (or its value holds NUL)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jdbc_alias_may_wait_longer_than_an_http_one() {
        let alias = |kind, base: &str, timeout_ms| Alias {
            name: "a".into(),
            description: None,
            kind,
            base_url: base.into(),
            headers: Default::default(),
            timeout_ms: Some(timeout_ms),
            retry: Default::default(),
            credential: None,
            execution: Default::default(),
            soap_version: None,
            wsdl: None,
            ca_pem: None,
            host_key: None,
            pool_size: None,
            tls: None,
            options: Default::default(),
            durability: None,
        };
        let hour = 3_600_000;
        let check = super::super::aliases::check_alias;
        assert!(check(&alias(ConnectionKind::Jdbc, "postgres://h/db", hour)).is_ok());
        assert!(check(&alias(ConnectionKind::Ssh, "ssh://h", hour)).is_ok());
        let http = check(&alias(ConnectionKind::Http, "https://h", hour)).expect_err("too long");
        assert!(http.to_string().contains("timeout_ms"), "{http}");
        let sql = check(&alias(ConnectionKind::Jdbc, "postgres://h/db", 25 * hour));
        assert!(sql.is_err(), "the SQL probe's own bound holds");
    }

    #[test]
    fn databases_are_read_from_the_url() {
        let db = database("postgres://db.internal:6432/inventory").expect("valid");
        assert_eq!(
            db,
            Database {
                driver: SqlDriver::Postgres,
                host: "db.internal".into(),
                port: Some(6432),
                database: "inventory".into()
            }
        );
        assert_eq!(
            database("mariadb://10.1.1.1/sccm").map(|d| d.driver).ok(),
            Some(SqlDriver::Mysql)
        );
        for bad in [
            "postgres://u:secret@h/db",
            "postgres://h/",
            "postgres://h/a/b",
            "oracle://h/db",
            "postgres://h/db?sslmode=disable",
        ] {
            let e = database(bad).expect_err(bad);
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
