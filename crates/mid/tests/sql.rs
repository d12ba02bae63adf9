//! The SQL probe against the machine's real PostgreSQL (127.0.0.1:5432) and MariaDB
//! (127.0.0.1:3306). Each test makes its own database and login and drops them; a
//! server that is not there is skipped with a loud `SKIPPED:` line. Every test that
//! needs a database runs once per server (`<test>::postgres`, `<test>::mariadb`).

mod sql_support;

use openmid_mid::policy::{Denial, EgressPolicy, Protocol};
use openmid_mid::probes::ProbeError;
use openmid_proto::sql::{SqlDriver, SqlResponse};
use serde_json::{Value, json};
use sql_support::*;
use std::time::{Duration, Instant};

/// Runs `$test(db)` once against each server.
macro_rules! on_both {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = super::Db::postgres().await {
                    super::$test(db).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() {
                if let Some(db) = super::Db::mariadb().await {
                    super::$test(db).await;
                }
            }
        }
    )*};
}

on_both!(
    bound_params,
    wrong_password,
    read_only_is_enforced_by_the_server,
    types_map_faithfully,
    timeout_stops_the_statement_on_the_server,
    cancel_stops_the_statement_on_the_server,
    resume_with_a_keyset,
    resume_without_a_keyset,
    large_rows_are_split_into_pages,
);

fn with(mut payload: Value, extra: Value) -> Value {
    if let (Some(map), Some(more)) = (payload.as_object_mut(), extra.as_object()) {
        map.extend(more.clone());
    }
    payload
}

fn response(value: Result<Value, ProbeError>) -> SqlResponse {
    let value = value.unwrap_or_else(|e| panic!("the job failed: {e}"));
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
}

/// Placeholders `1..=n` in the server's style.
fn marks(db: &Db, n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| match db.driver {
            SqlDriver::Postgres => format!("${i}"),
            SqlDriver::Mysql => "?".to_string(),
        })
        .collect()
}

async fn numbers_table(db: &Db, rows: u32) {
    db.admin("CREATE TABLE nums (id INT PRIMARY KEY, v TEXT)")
        .await;
    // Inserted out of order, so only an ORDER BY gives the key order.
    let mut values: Vec<String> = (1..=rows).map(|i| format!("({}, 'v{}')", i, i)).collect();
    values.reverse();
    for chunk in values.chunks(1000) {
        db.admin(&format!(
            "INSERT INTO nums (id, v) VALUES {}",
            chunk.join(",")
        ))
        .await;
    }
    let grant = match db.driver {
        SqlDriver::Postgres => format!("GRANT SELECT ON nums TO {}", db.user),
        SqlDriver::Mysql => return,
    };
    db.admin(&grant).await;
}

async fn bound_params(db: Db) {
    numbers_table(&db, 10).await;
    let ctx = context(loopback_policy(false), None);
    let m = marks(&db, 5);
    let statement = match db.driver {
        SqlDriver::Postgres => format!(
            "SELECT id, v, {}::int8 + 1 AS n, {}::text AS s, {}::bool AS b, {}::float8 AS f, {}::text AS nothing FROM nums WHERE id = {}::int4",
            m[0], m[1], m[2], m[3], m[4], "$6"
        ),
        SqlDriver::Mysql => {
            "SELECT id, v, ? + 1 AS n, ? AS s, ? AS b, ? AS f, ? AS nothing FROM nums WHERE id = ?"
                .to_string()
        }
    };
    let payload = with(
        db.request(&statement),
        json!({"params": [41, "it's \"quoted\"", true, 1.5, null, 7]}),
    );
    let r = response(run(&ctx, &job("params"), payload, db.credential(PASSWORD)).await);
    assert_eq!(
        (r.rows, r.pages, r.read_only, r.truncated),
        (1, 1, true, false)
    );
    let row = &r.first_page[0];
    assert_eq!(row[0], json!(7));
    assert_eq!(row[1], json!("v7"));
    assert_eq!(row[2], json!(42));
    assert_eq!(row[3], json!("it's \"quoted\""));
    assert!(row[4] == json!(true) || row[4] == json!(1), "{}", row[4]);
    assert_eq!(row[5], json!(1.5));
    assert_eq!(row[6], Value::Null);
    let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "v", "n", "s", "b", "f", "nothing"]);
}

async fn wrong_password(db: Db) {
    if db.driver == SqlDriver::Postgres {
        // pg_hba.conf here trusts 127.0.0.1: any password is accepted.
        eprintln!("SKIPPED: this PostgreSQL trusts loopback logins, a wrong password cannot fail");
        return;
    }
    let ctx = context(loopback_policy(false), None);
    let wrong = "Wr0ng-Canary-Password-91";
    let r = run(
        &ctx,
        &job("pw"),
        db.request("SELECT 1"),
        db.credential(wrong),
    )
    .await;
    let text = message(&r);
    assert!(matches!(r, Err(ProbeError::Target(_))), "{text}");
    assert!(text.contains("1045") || text.contains("denied"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
}

async fn read_only_is_enforced_by_the_server(db: Db) {
    db.admin("CREATE TABLE notes (id INT)").await;
    if db.driver == SqlDriver::Postgres {
        db.admin(&format!("GRANT ALL ON notes TO {}", db.user))
            .await;
    }
    let insert = "INSERT INTO notes (id) VALUES (1)";
    // Read-only by default: the server refuses, naming its reason.
    let ctx = context(loopback_policy(false), None);
    let r = run(
        &ctx,
        &job("ro"),
        db.request(insert),
        db.credential(PASSWORD),
    )
    .await;
    let text = message(&r);
    assert!(matches!(r, Err(ProbeError::Target(_))), "{text}");
    assert!(
        text.contains("25006") && text.contains("read-only"),
        "{text}"
    );
    // DDL too (MySQL commits implicitly before it; the session stays read-only).
    let r = run(
        &ctx,
        &job("ddl"),
        db.request("CREATE TABLE other (id INT)"),
        db.credential(PASSWORD),
    )
    .await;
    assert!(matches!(r, Err(ProbeError::Target(_))), "{}", message(&r));
    // write = true under the default `policy.sql.writes = false`: the MID refuses.
    let write = with(db.request(insert), json!({"write": true}));
    let before = ctx.policy.denials().of(Protocol::Sql);
    let r = run(&ctx, &job("denied"), write.clone(), db.credential(PASSWORD)).await;
    assert!(
        matches!(&r, Err(ProbeError::Policy(Denial::SqlWrite { .. }))),
        "{}",
        message(&r)
    );
    assert!(message(&r).contains("policy.sql.writes"), "{}", message(&r));
    assert_eq!(ctx.policy.denials().of(Protocol::Sql), before + 1);
    // Allowed by the policy, the write is committed.
    let ctx = context(loopback_policy(true), None);
    let r = response(run(&ctx, &job("rw"), write, db.credential(PASSWORD)).await);
    assert_eq!(
        (r.rows_affected, r.read_only, r.columns.len()),
        (Some(1), false, 0)
    );
    let r = response(
        run(
            &ctx,
            &job("check"),
            db.request("SELECT count(*) AS n FROM notes"),
            db.credential(PASSWORD),
        )
        .await,
    );
    assert_eq!(r.first_page, vec![vec![json!(1)]]);
}

async fn types_map_faithfully(db: Db) {
    let ctx = context(loopback_policy(false), None);
    let (setup, expected): (&str, Vec<(&str, &str, Value)>) = match db.driver {
        SqlDriver::Postgres => (
            r#"CREATE TYPE mood AS ENUM ('sad', 'happy');
            CREATE TABLE types (i2 int2, i4 int4, i8 int8, num numeric(30,10), big numeric,
              f4 float4, f8 float8, nan float8, b bool, t text, vc varchar(10), ch char(5),
              by bytea, d date, dinf date, bc date, tm time, ts timestamp, tstz timestamptz,
              iv interval, u uuid, j json, jb jsonb, arr int4[], tarr text[], m mood, ip inet,
              net cidr);
            INSERT INTO types VALUES (-32768, 2147483647, 9223372036854775807,
              12345678901234567890.0123456789, 123456789012345678901234567890.5, 0.1, 1.5e300,
              'NaN', true, 'héllo', 'vc', 'ab', '\x00ff10', '2024-02-29', 'infinity',
              '0044-03-15 BC', '13:05:09.5', '2024-02-29 13:05:09.123456',
              '2024-02-29 13:05:09+02', '1 year 2 mons 3 days 04:05:06.5',
              'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}', '{"b": null}',
              '{{1,2},{3,NULL}}', '{"x","y"}', 'happy', '10.0.0.1', '10.0.0.0/8');
            INSERT INTO types DEFAULT VALUES;"#,
            vec![
                ("i2", "number", json!(-32768)),
                ("i4", "number", json!(2147483647)),
                ("i8", "number", json!(9223372036854775807i64)),
                ("num", "decimal", json!("12345678901234567890.0123456789")),
                ("big", "decimal", json!("123456789012345678901234567890.5")),
                ("f4", "number", json!(0.1)),
                ("f8", "number", json!(1.5e300)),
                ("nan", "number", json!("NaN")),
                ("b", "boolean", json!(true)),
                ("t", "string", json!("héllo")),
                ("vc", "string", json!("vc")),
                ("ch", "string", json!("ab   ")),
                ("by", "base64", json!("AP8Q")),
                ("d", "date", json!("2024-02-29")),
                ("dinf", "date", json!("infinity")),
                ("bc", "date", json!("-0043-03-15")),
                ("tm", "time", json!("13:05:09.5")),
                ("ts", "timestamp", json!("2024-02-29T13:05:09.123456")),
                ("tstz", "timestamptz", json!("2024-02-29T11:05:09Z")),
                ("iv", "interval", json!("P1Y2M3DT4H5M6.5S")),
                ("u", "uuid", json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
                ("j", "json", json!({"a": [1, 2]})),
                ("jb", "json", json!({"b": null})),
                ("arr", "array<number>", json!([[1, 2], [3, null]])),
                ("tarr", "array<string>", json!(["x", "y"])),
                ("m", "string", json!("happy")),
                ("ip", "string", json!("10.0.0.1")),
                ("net", "string", json!("10.0.0.0/8")),
            ],
        ),
        SqlDriver::Mysql => (
            r#"SET time_zone = '+00:00';
            CREATE TABLE types (ti TINYINT, si SMALLINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED,
              dec1 DECIMAL(30,10), f FLOAT, dbl DOUBLE, bo BOOL, t TEXT, vc VARCHAR(10),
              ch CHAR(5), bl BLOB, vb VARBINARY(10), d DATE, tm TIME(6), dt DATETIME(6),
              ts TIMESTAMP(6) NULL, e ENUM('sad', 'happy'), j JSON, y YEAR, bit8 BIT(8),
              u UUID);
            INSERT INTO types VALUES (-128, -32768, 2147483647, 9223372036854775807,
              18446744073709551615, 12345678901234567890.0123456789, 0.1, 1.5e300, TRUE,
              'héllo', 'vc', 'ab', 0x00ff10, 0x0102, '2024-02-29', '-838:59:59',
              '2024-02-29 13:05:09.123456', '2024-02-29 13:05:09.5', 'happy',
              '{"a": [1, 2]}', 2024, b'101', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
            INSERT INTO types () VALUES ();"#,
            vec![
                ("ti", "number", json!(-128)),
                ("si", "number", json!(-32768)),
                ("i", "number", json!(2147483647)),
                ("bi", "number", json!(9223372036854775807i64)),
                ("ubi", "number", json!(18446744073709551615u64)),
                ("dec1", "decimal", json!("12345678901234567890.0123456789")),
                ("f", "number", json!(0.1)),
                ("dbl", "number", json!(1.5e300)),
                ("bo", "boolean", json!(true)),
                ("t", "string", json!("héllo")),
                ("vc", "string", json!("vc")),
                ("ch", "string", json!("ab")),
                ("bl", "base64", json!("AP8Q")),
                ("vb", "base64", json!("AQI=")),
                ("d", "date", json!("2024-02-29")),
                ("tm", "time", json!("-838:59:59")),
                ("dt", "timestamp", json!("2024-02-29T13:05:09.123456")),
                ("ts", "timestamptz", json!("2024-02-29T13:05:09.5Z")),
                ("e", "string", json!("happy")),
                // MariaDB's JSON is LONGTEXT in utf8mb4_bin, which the protocol flags
                // binary (sqlx does not pass the character set on): base64 of its text.
                ("j", "base64", json!("eyJhIjogWzEsIDJdfQ==")),
                ("y", "number", json!(2024)),
                ("bit8", "number", json!(5)),
                // MariaDB's UUID travels as its text, flagged binary too.
                (
                    "u",
                    "base64",
                    json!("YTBlZWJjOTktOWMwYi00ZWY4LWJiNmQtNmJiOWJkMzgwYTEx"),
                ),
            ],
        ),
    };
    db.admin(setup).await;
    if db.driver == SqlDriver::Postgres {
        db.admin(&format!("GRANT SELECT ON types TO {}", db.user))
            .await;
    }
    let r = response(
        run(
            &ctx,
            &job("types"),
            db.request("SELECT * FROM types"),
            db.credential(PASSWORD),
        )
        .await,
    );
    assert_eq!(r.rows, 2);
    for (i, (name, json_kind, value)) in expected.iter().enumerate() {
        let column = &r.columns[i];
        assert_eq!(
            (column.name.as_str(), column.json.as_str()),
            (*name, *json_kind),
            "column {i}: {column:?}"
        );
        assert_eq!(&r.first_page[0][i], value, "{name} ({})", column.type_name);
        assert_eq!(r.first_page[1][i], Value::Null, "{name} NULL");
    }
    // A type without a mapping is refused by column, saying what to do.
    let odd = match db.driver {
        SqlDriver::Postgres => "SELECT 1 AS fine, point(1, 2) AS p",
        SqlDriver::Mysql => return,
    };
    let r = run(&ctx, &job("odd"), db.request(odd), db.credential(PASSWORD)).await;
    let text = message(&r);
    assert!(
        text.contains("column 2 `p` (point)") && text.contains("cast"),
        "{text}"
    );
}

/// A statement that runs long on the server, marked to be found there.
fn sleeper(db: &Db, marker: &str) -> String {
    match db.driver {
        SqlDriver::Postgres => format!("SELECT pg_sleep(30) /* {marker} */"),
        SqlDriver::Mysql => format!("SELECT SLEEP(30) /* {marker} */"),
    }
}

async fn wait_until_running(db: &Db, marker: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while db.running(marker).await == 0 {
        assert!(
            Instant::now() < until,
            "the statement never showed up on the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn gone_soon(db: &Db, marker: &str) {
    let until = Instant::now() + Duration::from_secs(3);
    while db.running(marker).await > 0 {
        assert!(
            Instant::now() < until,
            "the statement still runs on the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn timeout_stops_the_statement_on_the_server(db: Db) {
    let ctx = context(loopback_policy(false), None);
    let marker = "openmid-timeout-marker";
    let payload = with(
        db.request(&sleeper(&db, marker)),
        json!({"timeout_ms": 1500}),
    );
    let started = Instant::now();
    let r = run(&ctx, &job("timeout"), payload, db.credential(PASSWORD)).await;
    assert!(
        matches!(r, Err(ProbeError::Timeout(1500))),
        "{}",
        message(&r)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    gone_soon(&db, marker).await;
}

async fn cancel_stops_the_statement_on_the_server(db: Db) {
    let ctx = std::sync::Arc::new(context(loopback_policy(false), None));
    let marker = "openmid-cancel-marker";
    let job = job("cancel");
    let token = job.cancel.clone();
    let payload = db.request(&sleeper(&db, marker));
    let credential = db.credential(PASSWORD);
    let running = tokio::spawn({
        let ctx = ctx.clone();
        async move { run(&ctx, &job, payload, credential).await }
    });
    wait_until_running(&db, marker).await;
    token.cancel();
    let r = tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .unwrap_or_else(|_| panic!("the probe did not stop"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(r, Err(ProbeError::Cancelled)), "{}", message(&r));
    // Closing the connection alone would leave the sleep running for 30 s.
    gone_soon(&db, marker).await;
}

fn ids(pages: &[openmid_proto::sql::SqlPage]) -> Vec<i64> {
    pages
        .iter()
        .flat_map(|p| p.rows.iter().map(|r| r[0].as_i64().unwrap_or(-1)))
        .collect()
}

async fn resume_with_a_keyset(db: Db) {
    numbers_table(&db, 2500).await;
    let instance = FakeInstance::start(true, Duration::ZERO).await;
    let ctx = context(loopback_policy(false), Some(&instance));
    let payload = with(
        db.request("SELECT id, v FROM nums"),
        json!({"keyset": ["id"], "page_rows": 1000}),
    );
    let first = response(
        run(
            &ctx,
            &job("keyset"),
            payload.clone(),
            db.credential(PASSWORD),
        )
        .await,
    );
    let pages = instance.pages();
    assert_eq!((first.rows, first.pages, pages.len()), (2500, 3, 3));
    // Ordered by the key on the first attempt too.
    assert_eq!(ids(&pages), (1..=2500).collect::<Vec<_>>());
    assert!(pages[0].columns.is_some() && pages[1].columns.is_none());
    assert_eq!(pages[1].last_key, Some(vec![json!(2000)]));

    // Say only pages 0 and 1 were stored: a re-run continues after key 2000.
    let resumed = FakeInstance::start(true, Duration::ZERO).await;
    let ctx = context(loopback_policy(false), Some(&resumed));
    let payload = with(
        payload,
        json!({"resume": {"next_page": 2, "rows_done": 2000, "after_key": pages[1].last_key}}),
    );
    let second = response(run(&ctx, &job("keyset"), payload, db.credential(PASSWORD)).await);
    let later = resumed.pages();
    assert_eq!((second.rows, second.pages), (2500, 3));
    assert_eq!((later[0].page, later[0].first_row), (2, 2000));
    let mut all = ids(&pages[..2]);
    all.extend(ids(&later));
    assert_eq!(all, (1..=2500).collect::<Vec<_>>(), "each row once");
}

async fn resume_without_a_keyset(db: Db) {
    numbers_table(&db, 2500).await;
    let instance = FakeInstance::start(true, Duration::ZERO).await;
    let ctx = context(loopback_policy(false), Some(&instance));
    let payload = with(
        db.request("SELECT id FROM nums ORDER BY id"),
        json!({"page_rows": 1000, "resume": {"next_page": 1, "rows_done": 1000}}),
    );
    let r = response(run(&ctx, &job("skip"), payload, db.credential(PASSWORD)).await);
    let pages = instance.pages();
    assert_eq!((r.rows, r.pages), (2500, 3));
    assert_eq!(
        pages
            .iter()
            .map(|p| (p.page, p.first_row))
            .collect::<Vec<_>>(),
        [(1, 1000), (2, 2000)]
    );
    assert_eq!(ids(&pages), (1001..=2500).collect::<Vec<_>>());
    assert_eq!(r.first_page[0], vec![json!(1001)]);
}

async fn large_rows_are_split_into_pages(db: Db) {
    let instance = FakeInstance::start(true, Duration::ZERO).await;
    let ctx = context(loopback_policy(false), Some(&instance));
    let statement = match db.driver {
        SqlDriver::Postgres => {
            "SELECT n, repeat('x', 100000) AS pad FROM generate_series(1, 50) AS n"
        }
        SqlDriver::Mysql => "SELECT seq AS n, repeat('x', 100000) AS pad FROM seq_1_to_50",
    };
    let payload = with(
        db.request(statement),
        json!({"page_rows": 500, "max_rows": 45}),
    );
    let r = response(run(&ctx, &job("wide"), payload, db.credential(PASSWORD)).await);
    let pages = instance.pages();
    let seen = instance
        .seen
        .lock()
        .map(|s| (s.largest, s.out_of_order))
        .unwrap_or_default();
    assert!(
        seen.0 <= openmid_proto::command_output::MAX_CHUNK_BYTES,
        "{}",
        seen.0
    );
    assert_eq!(seen.1, 0, "chunks in order, in the rows stream");
    assert!(pages.len() >= 5, "{} pages", pages.len());
    assert_eq!((r.rows, r.truncated), (45, true));
    assert_eq!(ids(&pages), (1..=45).collect::<Vec<_>>());
    assert_eq!(r.first_page.len(), pages[0].rows.len());
}

#[tokio::test]
async fn the_default_policy_refuses_loopback() {
    let ctx = context(EgressPolicy::default(), None);
    let db_less = json!({
        "driver": "postgres", "host": "127.0.0.1", "database": "postgres",
        "credential": {"id": "c", "name": "c"}, "statement": "SELECT 1",
    });
    let cred = openmid_proto::credential::CredentialSpec::Database {
        username: "postgres".into(),
        password: openmid_proto::credential::SecretValue::Stored(
            openmid_proto::secret::Secret::new("x"),
        ),
    };
    for host in ["127.0.0.1", "localhost"] {
        let payload = with(db_less.clone(), json!({"host": host}));
        let r = run(&ctx, &job("lo"), payload, cred.clone()).await;
        let text = message(&r);
        assert!(matches!(r, Err(ProbeError::Policy(_))), "{host}: {text}");
        assert!(text.contains("policy.sql.allow_cidrs"), "{text}");
    }
    assert_eq!(ctx.policy.denials().of(Protocol::Sql), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let ctx = context(loopback_policy(false), None);
    let payload = with(
        db.request("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
        json!({"tls": "require"}),
    );
    match run(&ctx, &job("tls"), payload, db.credential(PASSWORD)).await {
        Ok(v) => {
            let r: SqlResponse = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.first_page, vec![vec![json!(true)]]);
        }
        Err(e) if e.to_string().contains("does not support TLS") => {
            eprintln!("SKIPPED: this PostgreSQL has no TLS");
        }
        Err(e) => panic!("{e}"),
    }
    // The server's snakeoil certificate chains to nothing this MID trusts.
    let payload = with(db.request("SELECT 1"), json!({"tls": "verify_full"}));
    let r = run(&ctx, &job("tls-verify"), payload, db.credential(PASSWORD)).await;
    assert!(matches!(r, Err(ProbeError::Target(_))), "{}", message(&r));
}

/// A million rows through the probe and the uploader, in a child process of its own
/// so that its peak memory is the probe's alone: the rows as JSON are ~190 MB, the
/// growth of the process's high-water mark must stay a fraction of that, and the
/// first page must reach the instance long before the last row is read.
#[test]
fn a_million_rows_stream_in_bounded_memory() {
    if std::env::var("OPENMID_SQL_MILLION").is_ok() {
        return;
    }
    for driver in ["postgres", "mysql"] {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "million_rows_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("OPENMID_SQL_MILLION", driver)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{driver}: {text}");
        if text.contains("SKIPPED") {
            eprintln!("{driver}: {text}");
            continue;
        }
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.find(name).map(|at| &l[at + name.len()..]))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in: {text}"))
        };
        let (rows, growth_kb) = (field("ROWS="), field("HWM_GROWTH_KB="));
        eprintln!("{driver}: {rows} rows, peak memory grew {growth_kb} KiB");
        assert_eq!(rows, 1_000_000);
        assert!(
            growth_kb < 48 * 1024,
            "{driver}: peak memory grew {growth_kb} KiB"
        );
    }
}

fn high_water_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_rows_child() {
    let Ok(driver) = std::env::var("OPENMID_SQL_MILLION") else {
        return;
    };
    let db = match driver.as_str() {
        "postgres" => Db::postgres().await,
        _ => Db::mariadb().await,
    };
    let Some(db) = db else {
        return;
    };
    let statement = match db.driver {
        SqlDriver::Postgres => {
            "SELECT n, md5(n::text) AS h, repeat('x', 100) AS pad FROM generate_series(1, 1000000) AS n"
        }
        SqlDriver::Mysql => {
            "SELECT seq AS n, md5(seq) AS h, repeat('x', 100) AS pad FROM seq_1_to_1000000"
        }
    };
    let instance = FakeInstance::start(false, Duration::ZERO).await;
    let ctx = context(loopback_policy(false), Some(&instance));
    let payload = with(db.request(statement), json!({"page_rows": 1000}));
    // Warm up the connection path, the uploader and the allocator first.
    let warm = with(db.request("SELECT 1 AS one"), json!({}));
    let _ = run(&ctx, &job("warm"), warm, db.credential(PASSWORD)).await;
    let before = high_water_kb();
    let started = Instant::now();
    let r = response(run(&ctx, &job("million"), payload, db.credential(PASSWORD)).await);
    let took = started.elapsed();
    let growth = high_water_kb().saturating_sub(before);
    let (count, rows, disorder, first) = instance
        .seen
        .lock()
        .map(|s| {
            (
                s.count,
                s.rows,
                s.out_of_order,
                s.first_at.get("million").copied(),
            )
        })
        .unwrap_or_default();
    let first = first.map(|at| at.duration_since(started)).unwrap_or(took);
    // A follower has page 0 while the rest is still being read.
    assert!(first < took / 4, "first page after {first:?} of {took:?}");
    assert_eq!((r.rows, r.pages), (1_000_000, 1000));
    assert_eq!((count, rows, disorder), (1000 + 1, 1_000_001, 0));
    println!("ROWS={}", r.rows);
    println!("HWM_GROWTH_KB={growth}");
    println!(
        "TOOK_MS={} FIRST_PAGE_MS={}",
        took.as_millis(),
        first.as_millis()
    );
}
