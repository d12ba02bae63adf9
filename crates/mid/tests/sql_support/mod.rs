//! What the SQL probe's tests share: a throw-away database on the machine's real
//! PostgreSQL or MariaDB (skipped loudly when the server is not there), the probe
//! called as the executor calls it, and a stand-in for the instance's output endpoint
//! that records the pages the MID posts (or only counts them, for the large results).

#![allow(dead_code)]

use axum::extract::{Path, State};
use axum::routing::post;
use openmid_mid::config::{LocalSecretPolicy, MidConfig};
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_mid::probes::{JobContext, ProbeContext, ProbeError};
use openmid_mid::session::client::InstanceClient;
use openmid_proto::command_output::{ChunkContent, OutputAck, OutputPost, OutputStream};
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::ecc::Topic;
use openmid_proto::mid::JobRef;
use openmid_proto::secret::Secret;
use openmid_proto::sql::{SqlDriver, SqlPage};
use serde_json::{Value, json};
use sqlx::{Connection as _, Executor as _};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The password of the login each test creates.
pub const PASSWORD: &str = "s3cret-Canary-7f1e";

/// A database made for one test (and its own login), dropped with it.
pub struct Db {
    pub driver: SqlDriver,
    pub name: String,
    pub user: String,
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    aws_lc_rs::rand::fill(&mut b).unwrap_or_default();
    hex::encode(b)
}

fn pg_admin_url(db: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{db}")
}

const MARIA_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306/";

impl Db {
    /// A new database on PostgreSQL, or `None` (printed) when the server is absent.
    pub async fn postgres() -> Option<Db> {
        let Ok(mut admin) = sqlx::PgConnection::connect(&pg_admin_url("postgres")).await else {
            eprintln!("SKIPPED: no PostgreSQL at 127.0.0.1:5432 (user postgres)");
            return None;
        };
        let suffix = random_suffix();
        let db = Db {
            driver: SqlDriver::Postgres,
            name: format!("openmid_t_{suffix}"),
            user: format!("openmid_u_{suffix}"),
        };
        for sql in [
            format!("CREATE DATABASE {}", db.name),
            format!("CREATE ROLE {} LOGIN PASSWORD '{PASSWORD}'", db.user),
            format!("ALTER DATABASE {} OWNER TO {}", db.name, db.user),
        ] {
            admin
                .execute(sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        Some(db)
    }

    /// A new database on MariaDB/MySQL, or `None` (printed) when the server is absent.
    pub async fn mariadb() -> Option<Db> {
        let Ok(mut admin) = sqlx::MySqlConnection::connect(MARIA_ADMIN_URL).await else {
            eprintln!("SKIPPED: no MariaDB/MySQL at 127.0.0.1:3306 (user root, no password)");
            return None;
        };
        let suffix = random_suffix();
        let db = Db {
            driver: SqlDriver::Mysql,
            name: format!("openmid_t_{suffix}"),
            user: format!("openmid_u_{suffix}"),
        };
        for sql in [
            format!("CREATE DATABASE {}", db.name),
            format!("CREATE USER '{}'@'%' IDENTIFIED BY '{PASSWORD}'", db.user),
            format!("GRANT ALL ON {}.* TO '{}'@'%'", db.name, db.user),
        ] {
            sqlx::raw_sql(&sql)
                .execute(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        Some(db)
    }

    /// Runs statements in the database as the administrator (setup, checks).
    pub async fn admin(&self, sql: &str) {
        match self.driver {
            SqlDriver::Postgres => {
                let mut c = sqlx::PgConnection::connect(&pg_admin_url(&self.name))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                sqlx::raw_sql(sql)
                    .execute(&mut c)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            SqlDriver::Mysql => {
                let url = format!("{MARIA_ADMIN_URL}{}", self.name);
                let mut c = sqlx::MySqlConnection::connect(&url)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                sqlx::raw_sql(sql)
                    .execute(&mut c)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    /// Statements of this test's login still running whose text holds `marker`.
    pub async fn running(&self, marker: &str) -> i64 {
        let pattern = format!("%{marker}%");
        match self.driver {
            SqlDriver::Postgres => {
                let mut c = sqlx::PgConnection::connect(&pg_admin_url("postgres"))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND state = 'active' AND query LIKE $2",
                )
                .bind(&self.user)
                .bind(&pattern)
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
            }
            SqlDriver::Mysql => {
                let mut c = sqlx::MySqlConnection::connect(MARIA_ADMIN_URL)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                sqlx::query_scalar(
                    "SELECT count(*) FROM information_schema.processlist WHERE user = ? AND command IN ('Query', 'Execute') AND info LIKE ?",
                )
                .bind(&self.user)
                .bind(&pattern)
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
            }
        }
    }

    /// A request payload for `statement` in this database, as this test's login.
    pub fn request(&self, statement: &str) -> Value {
        json!({
            "driver": self.driver,
            "host": "127.0.0.1",
            "database": self.name,
            "credential": {"id": "cred-1", "name": "test login"},
            "statement": statement,
        })
    }

    /// The job's credential.
    pub fn credential(&self, password: &str) -> CredentialSpec {
        CredentialSpec::Database {
            username: self.user.clone(),
            password: SecretValue::Stored(Secret::new(password)),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let (driver, name, user) = (self.driver, self.name.clone(), self.user.clone());
        // Dropped outside the test's runtime, which may be shutting down.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                match driver {
                    SqlDriver::Postgres => {
                        if let Ok(mut c) =
                            sqlx::PgConnection::connect(&pg_admin_url("postgres")).await
                        {
                            let _ = c
                                .execute(
                                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                                )
                                .await;
                            let _ = c
                                .execute(format!("DROP ROLE IF EXISTS {user}").as_str())
                                .await;
                        }
                    }
                    SqlDriver::Mysql => {
                        if let Ok(mut c) = sqlx::MySqlConnection::connect(MARIA_ADMIN_URL).await {
                            let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name}"))
                                .execute(&mut c)
                                .await;
                            let _ = sqlx::raw_sql(&format!("DROP USER IF EXISTS '{user}'@'%'"))
                                .execute(&mut c)
                                .await;
                        }
                    }
                }
            });
        })
        .join();
    }
}

/// A policy reaching loopback for SQL (and letting jobs write when `writes`).
pub fn loopback_policy(writes: bool) -> EgressPolicy {
    let text = format!("[sql]\nallow_cidrs = [\"127.0.0.0/8\"]\nwrites = {writes}\n");
    let config: PolicyConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    EgressPolicy::new(config).unwrap_or_else(|e| panic!("{e}"))
}

/// A probe context with `policy`, streaming to `instance` when given.
pub fn context(policy: EgressPolicy, instance: Option<&FakeInstance>) -> ProbeContext {
    let ctx = ProbeContext::new(1 << 20, LocalSecretPolicy::default(), Arc::new(policy))
        .unwrap_or_else(|e| panic!("{e}"));
    match instance {
        Some(i) => ctx.with_instance(Arc::new(i.client())),
        None => ctx,
    }
}

/// A job to run.
pub fn job(name: &str) -> JobContext {
    JobContext::new(JobRef {
        output_id: name.to_string(),
        attempt: 1,
    })
}

/// Runs the probe as the executor does.
pub async fn run(
    ctx: &ProbeContext,
    job: &JobContext,
    payload: Value,
    credential: CredentialSpec,
) -> Result<Value, ProbeError> {
    openmid_mid::probes::run(Topic::JDBCProbe, payload.into(), Some(credential), job, ctx)
        .await
        .map(|p| p.to_value())
}

/// What the stand-in instance saw.
#[derive(Default)]
pub struct Seen {
    /// Every page, when kept.
    pub pages: Vec<SqlPage>,
    /// Pages received.
    pub count: u64,
    /// Rows received.
    pub rows: u64,
    /// The largest page line.
    pub largest: usize,
    /// Chunks whose `seq` did not follow the previous one's, or not in `rows`.
    pub out_of_order: u64,
    /// When each output's first page arrived.
    pub first_at: HashMap<String, Instant>,
    next_seq: HashMap<String, u64>,
}

/// The instance's `POST /mid/v1/results/{output}/{attempt}/output`, and nothing else.
pub struct FakeInstance {
    pub url: String,
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct FakeState {
    seen: Arc<Mutex<Seen>>,
    keep: bool,
    delay: Duration,
}

impl FakeInstance {
    /// Listens on loopback; keeps the pages when `keep`, and answers each post after
    /// `delay` (a slow instance).
    pub async fn start(keep: bool, delay: Duration) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = FakeState {
            seen: seen.clone(),
            keep,
            delay,
        };
        let app = axum::Router::new()
            .route("/mid/v1/results/{output}/{attempt}/output", post(receive))
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            seen,
            task,
        }
    }

    fn client(&self) -> InstanceClient {
        let text = format!(
            "name = \"sql-test\"\ninstance_url = \"{}\"\nstate_dir = \"/tmp/openmid-sql-test\"\n",
            self.url
        );
        let config: MidConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        InstanceClient::new(&config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The pages kept, in order.
    pub fn pages(&self) -> Vec<SqlPage> {
        self.seen
            .lock()
            .map(|s| s.pages.clone())
            .unwrap_or_default()
    }
}

impl Drop for FakeInstance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<FakeState>,
    Path((output, _attempt)): Path<(String, u32)>,
    axum::Json(post): axum::Json<OutputPost>,
) -> axum::Json<OutputAck> {
    tokio::time::sleep(state.delay).await;
    let chunks = post.decode().unwrap_or_else(|e| panic!("{e}"));
    let mut seen = state.seen.lock().unwrap_or_else(|e| e.into_inner());
    seen.first_at
        .entry(output.clone())
        .or_insert_with(Instant::now);
    for chunk in &chunks {
        let next = seen.next_seq.entry(output.clone()).or_insert(0);
        let in_order = chunk.seq == *next && chunk.stream == OutputStream::Rows;
        *next = chunk.seq + 1;
        if !in_order {
            seen.out_of_order += 1;
        }
        let ChunkContent::Data(data) = &chunk.content else {
            seen.out_of_order += 1;
            continue;
        };
        assert!(data.ends_with(b"\n"), "a page is one line");
        seen.largest = seen.largest.max(data.len());
        let page: SqlPage = serde_json::from_slice(data).unwrap_or_else(|e| panic!("{e}"));
        seen.count += 1;
        seen.rows += page.rows.len() as u64;
        if state.keep {
            seen.pages.push(page);
        }
    }
    axum::Json(OutputAck {
        stored: chunks.len() as u64,
        duplicate: 0,
    })
}

/// The error's message, or the answer when there was none.
pub fn message<T: std::fmt::Debug>(r: &Result<T, ProbeError>) -> String {
    match r {
        Ok(v) => format!("(no error: {v:?})"),
        Err(e) => e.to_string(),
    }
}
