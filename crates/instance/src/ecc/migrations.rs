//! The schema, as numbered migrations embedded in the binary and applied at start.
//! A migration is never edited once released; changes are new entries.

/// `(version, SQL)` in order. The SQL is plain enough for SQLite and PostgreSQL alike.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE enrollment_tokens (
    token_hash    TEXT PRIMARY KEY,
    expires_at    BIGINT NOT NULL,
    auto_validate BOOLEAN NOT NULL,
    note          TEXT,
    created_at    BIGINT NOT NULL,
    used_by       TEXT,
    used_at       BIGINT
);

CREATE TABLE mids (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    secret_hash      TEXT NOT NULL,
    public_key       TEXT NOT NULL,
    status           TEXT NOT NULL,
    status_reason    TEXT,
    version          TEXT NOT NULL,
    hostname         TEXT NOT NULL,
    protocol_version BIGINT NOT NULL,
    enrolled_at      BIGINT NOT NULL,
    validated_at     BIGINT,
    last_seen_at     BIGINT
);

CREATE TABLE ecc (
    id               TEXT PRIMARY KEY,
    queue            TEXT NOT NULL,
    agent            TEXT NOT NULL,
    topic            TEXT NOT NULL,
    name             TEXT NOT NULL,
    source           TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    priority         BIGINT NOT NULL,
    response_to      TEXT,
    correlator       TEXT,
    attempt          BIGINT NOT NULL,
    max_attempts     BIGINT NOT NULL,
    at_most_once     BOOLEAN NOT NULL,
    error            TEXT,
    claimed_by       TEXT,
    lease_expires_at BIGINT,
    created_at       BIGINT NOT NULL,
    claimed_at       BIGINT,
    processed_at     BIGINT,
    duration_ms      BIGINT
);

-- What a claim scans: ready outputs of one agent, by priority then age.
CREATE INDEX ecc_ready ON ecc (agent, priority, id) WHERE queue = 'output' AND state = 'ready';
-- What the lease sweeper scans.
CREATE INDEX ecc_leases ON ecc (lease_expires_at) WHERE state = 'processing';
CREATE INDEX ecc_correlator ON ecc (correlator) WHERE correlator IS NOT NULL;
CREATE INDEX ecc_state ON ecc (queue, state, id);
-- Exactly one input per output: the database itself refuses a second.
CREATE UNIQUE INDEX ecc_one_input ON ecc (response_to) WHERE queue = 'input';
"#,
    ),
    (
        2,
        r#"
-- Clusters and mid.auto: the instance assigns each output to one MID, and says why.
ALTER TABLE ecc ADD COLUMN assigned_to TEXT;
ALTER TABLE ecc ADD COLUMN selection TEXT;
ALTER TABLE ecc ADD COLUMN application TEXT;
UPDATE ecc SET assigned_to = substr(agent, 12) WHERE queue = 'output' AND agent LIKE 'mid.server.%';
DROP INDEX ecc_ready;
CREATE INDEX ecc_ready ON ecc (assigned_to, priority, id) WHERE queue = 'output' AND state = 'ready';
CREATE INDEX ecc_running ON ecc (claimed_by) WHERE queue = 'output' AND state = 'processing';

ALTER TABLE mids ADD COLUMN declared_profile TEXT NOT NULL DEFAULT '{}';
ALTER TABLE mids ADD COLUMN admin_profile TEXT;
ALTER TABLE mids ADD COLUMN health TEXT;
ALTER TABLE mids ADD COLUMN rekey_requested BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE mid_status_history (
    id          TEXT PRIMARY KEY,
    mid_id      TEXT NOT NULL,
    at          BIGINT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX mid_status_history_mid ON mid_status_history (mid_id, at);

CREATE TABLE clusters (
    name       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE cluster_members (
    cluster  TEXT NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
    mid_name TEXT NOT NULL,
    rank     BIGINT NOT NULL,
    PRIMARY KEY (cluster, mid_name)
);
"#,
    ),
    (
        3,
        r#"
-- Connection & Credential aliases. A credential's secrets live only in `sealed`
-- (AES-256-GCM under the instance's master key); `shown` is the redacted form.
CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    kind        TEXT NOT NULL,
    shown       TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    key_id      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE TABLE aliases (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    credential TEXT,
    spec       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX aliases_credential ON aliases (credential);
"#,
    ),
    (
        4,
        r#"
-- A MID process's session: a new one releases what the previous process held.
ALTER TABLE mids ADD COLUMN session_id TEXT;

-- Idempotency-Key of a submission: a retry with the same key gets the first output.
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    output_id    TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

-- Running outputs an admin cancelled: their MID is told to stop, and whatever ends
-- them (the result, a lapsed lease) ends them `cancelled`.
CREATE TABLE cancel_requests (
    output_id    TEXT PRIMARY KEY,
    reason       TEXT NOT NULL,
    requested_at BIGINT NOT NULL
);
"#,
    ),
    (
        5,
        r#"
-- A Command's output as it streams in while it runs, per attempt. `seq` numbers the
-- chunks of both streams together, so (output, attempt, seq) makes a retried post
-- harmless. `data` is NULL for a stream's truncation marker.
CREATE TABLE command_output (
    output_id     TEXT NOT NULL,
    attempt       BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    stream        TEXT NOT NULL,
    byte_offset   BIGINT NOT NULL,
    data          BLOB,
    dropped_bytes BIGINT,
    PRIMARY KEY (output_id, attempt, seq)
);
"#,
    ),
    (
        6,
        r#"
-- Data sources of Import Sets: `spec` is the source as written (JSON); the rest is
-- what the instance keeps of its runs.
CREATE TABLE data_sources (
    name            TEXT PRIMARY KEY,
    spec            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    next_run_at     BIGINT,
    schedule_anchor BIGINT,
    marker_value    TEXT,
    last_import_set TEXT
);
CREATE INDEX data_sources_due ON data_sources (next_run_at);

-- One run of a data source. Its rows are the `rows` chunks of `output_id`, kept
-- while the import set is (the ECC purge skips outputs an import set holds).
CREATE TABLE import_sets (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    output_id    TEXT NOT NULL UNIQUE,
    state        TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    expires_at   BIGINT,
    row_count    BIGINT NOT NULL DEFAULT 0,
    error_count  BIGINT NOT NULL DEFAULT 0,
    columns      TEXT,
    marker_from  TEXT,
    marker_to    TEXT,
    detail       TEXT
);
CREATE INDEX import_sets_source ON import_sets (source, started_at);
CREATE INDEX import_sets_state ON import_sets (state);
CREATE INDEX import_sets_expiry ON import_sets (expires_at);
"#,
    ),
    (
        7,
        r#"
-- Discovery: runs (a ping, then a scan of what answered) and the devices they file,
-- one per address, updated by every run that sees it again.
CREATE TABLE discovery_runs (
    id              TEXT PRIMARY KEY,
    request         TEXT NOT NULL,
    state           TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    ping_output     TEXT NOT NULL,
    scan_output     TEXT,
    hosts_alive     BIGINT NOT NULL DEFAULT 0,
    devices_new     BIGINT NOT NULL DEFAULT 0,
    devices_updated BIGINT NOT NULL DEFAULT 0,
    detail          TEXT
);
CREATE INDEX discovery_runs_state ON discovery_runs (state);

CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    address    TEXT NOT NULL UNIQUE,
    class      TEXT NOT NULL,
    evidence   TEXT NOT NULL,
    open_ports TEXT NOT NULL,
    rtt_ms     DOUBLE PRECISION,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    last_run   TEXT NOT NULL
);
CREATE INDEX devices_class ON devices (class);
"#,
    ),
    (
        8,
        r#"
-- Metric collection: scrape targets per agent (MID or cluster), the assignment last
-- sent to each MID, the batches received (once per MID and sequence number), series
-- and their samples. Ids are given by the one writer (max + 1), so the SQL stays
-- plain for SQLite and PostgreSQL alike.
CREATE TABLE metric_targets (
    agent      TEXT NOT NULL,
    name       TEXT NOT NULL,
    target     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (agent, name)
);

CREATE TABLE metric_assignments (
    mid     TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    digest  TEXT NOT NULL,
    output  TEXT NOT NULL,
    targets TEXT NOT NULL
);

CREATE TABLE metric_batches (
    mid         TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (mid, seq)
);
CREATE INDEX metric_batches_received ON metric_batches (received_at);

CREATE TABLE metric_series (
    id     BIGINT PRIMARY KEY,
    mid    TEXT NOT NULL,
    name   TEXT NOT NULL,
    labels TEXT NOT NULL,
    UNIQUE (mid, labels)
);
CREATE INDEX metric_series_name ON metric_series (name);

-- value NULL is NaN (SQLite stores a NaN REAL as NULL anyway).
CREATE TABLE metric_samples (
    id     BIGINT PRIMARY KEY,
    series BIGINT NOT NULL,
    t_ms   BIGINT NOT NULL,
    value  DOUBLE PRECISION
);
CREATE INDEX metric_samples_series ON metric_samples (series, t_ms);
CREATE INDEX metric_samples_time ON metric_samples (t_ms);
"#,
    ),
    (
        9,
        r#"
-- Discovery runs in chunks: every ECC job of a run by stage (JSON), the schedule
-- that started it; what each device said about itself (its name, and the identity
-- evidence as JSON); and discovery schedules, claimed when due by moving
-- next_run_at with a compare-and-set, as data sources are.
ALTER TABLE discovery_runs ADD COLUMN jobs TEXT;
ALTER TABLE discovery_runs ADD COLUMN schedule TEXT;
CREATE INDEX discovery_runs_schedule ON discovery_runs (schedule, started_at);
ALTER TABLE devices ADD COLUMN name TEXT;
ALTER TABLE devices ADD COLUMN identity TEXT;

CREATE TABLE discovery_schedules (
    name            TEXT PRIMARY KEY,
    spec            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    next_run_at     BIGINT,
    schedule_anchor BIGINT,
    last_run        TEXT
);
CREATE INDEX discovery_schedules_due ON discovery_schedules (next_run_at);
"#,
    ),
    (
        10,
        r#"
-- Several instance nodes on one database: each node says it is alive; which node a
-- MID's long-poll is attached to (written when that changes, not per poll); and
-- named leases (the sweeper, discovery's advancing) that one node holds at a time
-- and that lapse by themselves when their node dies.
CREATE TABLE instance_nodes (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);
CREATE TABLE mid_presence (
    mid_name TEXT PRIMARY KEY,
    node     TEXT NOT NULL,
    since    BIGINT NOT NULL
);
CREATE TABLE node_leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  BIGINT NOT NULL
);
"#,
    ),
    (
        11,
        r#"
-- The W3C traceparent of each job (the instance's span of it; the trace id is the
-- caller's), carried to the MID and into the requests it makes.
ALTER TABLE ecc ADD COLUMN traceparent TEXT;
"#,
    ),
    (
        12,
        r#"
-- The audit log, append-only: admin calls (actor, action, target, peer, HTTP status)
-- and every command, SSH command and SQL statement a MID ran (MID, output, topic,
-- the command line or statement, exit status or rows). Ids are given by the writer
-- (max + 1, under a lock on PostgreSQL), so they grow with time and page the log.
CREATE TABLE audit_log (
    id         BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    peer       TEXT,
    outcome    TEXT NOT NULL,
    status     BIGINT,
    mid        TEXT,
    output_id  TEXT,
    topic      TEXT,
    detail     TEXT,
    rows_count BIGINT,
    error      TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_mid ON audit_log (mid, id);
"#,
    ),
    (
        13,
        r#"
-- Dashboard sessions, in the store so every instance node sharing it accepts them.
-- Only a hash of the session id is kept (the cookie is the secret); the CSRF token
-- is bound to the session. `expires_at` moves on with use (idle timeout).
CREATE TABLE dashboard_sessions (
    id_hash      TEXT PRIMARY KEY,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);

-- The dashboard's ECC queue filters by topic and by agent, newest first.
CREATE INDEX ecc_topic ON ecc (topic, id);
CREATE INDEX ecc_agent ON ecc (agent, id);
"#,
    ),
    (
        14,
        r#"
-- A MID's running jobs are found through ecc_state (queue, state) as well: they are
-- the `processing` outputs, as many as the MIDs have slots. A second index over the
-- same rows cost every claim an entry and every result its removal.
DROP INDEX ecc_running;
"#,
    ),
];
