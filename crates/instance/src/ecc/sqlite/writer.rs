//! The one writer: a thread that owns SQLite's write connection and runs every write
//! operation of the store. The operations waiting when the thread comes round run in
//! one transaction — each inside its own savepoint, so one that fails undoes only
//! itself — and are committed together: one fsync for the whole group, whether they
//! are new outputs from the API, claims from MIDs' polls or results. (A savepoint's
//! journal stays in memory up to 4 MiB: see `.cargo/config.toml`.)
//!
//! Why a thread of our own rather than an async driver: such a driver hands every
//! statement to its worker thread and the answer back, two context switches per
//! statement, and a store operation is several statements. Those hops, not SQLite,
//! were most of the instance's CPU under load. Here an operation is one hop however
//! many statements it runs, and its statements are prepared once and cached.

use super::super::StoreError;
use rusqlite::Connection;
use std::sync::mpsc;

/// Most operations committed together (bounds the latency a large group adds).
const OPS_PER_COMMIT: usize = 256;

/// An operation queued for the writer.
trait Op: Send {
    /// Runs inside the open transaction; true if it succeeded and its changes stay.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Delivers the outcome once the transaction has ended; `Err` says it did not
    /// commit, and why.
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

/// An operation, its outcome once run, and who waits for it.
struct Pending<F, T, E> {
    work: Option<F>,
    outcome: Option<Result<T, E>>,
    reply: tokio::sync::oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Op for Pending<F, T, E>
where
    F: FnOnce(&Connection) -> Result<T, E> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let outcome = work(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let outcome = match (self.outcome, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)) | None, Err(why)) => Err(E::from(StoreError::Batch(why))),
            (None, Ok(())) => Err(E::from(StoreError::Batch(
                "the operation did not run".into(),
            ))),
        };
        let _ = self.reply.send(outcome);
    }
}

enum Message {
    Op(Box<dyn Op>),
    /// Finish what is queued, close the connection, then answer.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// Handle to the writer thread; clones share it. The thread ends when the store is
/// closed or every handle is gone.
#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::Sender<Message>,
}

fn closed() -> StoreError {
    StoreError::Batch("the store is closed".into())
}

impl Writer {
    /// Starts the writer thread on `conn` (already configured and migrated).
    pub(super) fn start(conn: Connection) -> Result<Self, StoreError> {
        let (queue, messages) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, messages))
            .map_err(|source| StoreError::Open {
                path: "sqlite writer thread".into(),
                source,
            })?;
        Ok(Self { queue })
    }

    /// Runs `work` in the writer's transaction and returns its outcome once committed.
    /// An `Err` from `work` undoes its own changes and nothing else.
    pub(super) async fn write<F, T, E>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let op = Pending {
            work: Some(work),
            outcome: None,
            reply,
        };
        self.queue
            .send(Message::Op(Box::new(op)))
            .map_err(|_| E::from(closed()))?;
        outcome.await.map_err(|_| E::from(closed()))?
    }

    /// Lets queued operations finish and closes the connection (checkpointing the WAL).
    pub(super) async fn close(&self) {
        let (reply, done) = tokio::sync::oneshot::channel();
        if self.queue.send(Message::Close(reply)).is_ok() {
            let _ = done.await;
        }
    }
}

fn run(conn: Connection, messages: mpsc::Receiver<Message>) {
    let mut closing = None;
    while closing.is_none() {
        let Ok(first) = messages.recv() else { break };
        let mut group = Vec::new();
        match first {
            Message::Op(op) => group.push(op),
            Message::Close(reply) => closing = Some(reply),
        }
        while closing.is_none() && group.len() < OPS_PER_COMMIT {
            match messages.try_recv() {
                Ok(Message::Op(op)) => group.push(op),
                Ok(Message::Close(reply)) => closing = Some(reply),
                Err(_) => break,
            }
        }
        if !group.is_empty() {
            commit_group(&conn, group);
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the database");
    }
    if let Some(reply) = closing {
        let _ = reply.send(());
    }
}

fn exec(conn: &Connection, sql: &str) -> Result<(), String> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Runs a group in one transaction and tells each operation how it ended.
fn commit_group(conn: &Connection, mut group: Vec<Box<dyn Op>>) {
    if let Err(why) = exec(conn, "BEGIN IMMEDIATE") {
        for op in group {
            op.finish(Err(why.clone()));
        }
        return;
    }
    let ended = if let [only] = group.as_mut_slice() {
        // Alone, an operation needs no savepoint: if it fails, the transaction goes.
        if only.run(conn) {
            exec(conn, "COMMIT")
        } else {
            exec(conn, "ROLLBACK").map_err(|why| {
                tracing::warn!(error = %why, "rolling back a failed operation");
                why
            })
        }
    } else {
        run_with_savepoints(conn, &mut group).and_then(|()| exec(conn, "COMMIT"))
    };
    if ended.is_err() && !conn.is_autocommit() {
        let _ = exec(conn, "ROLLBACK");
    }
    for op in group {
        op.finish(ended.clone());
    }
}

fn run_with_savepoints(conn: &Connection, group: &mut [Box<dyn Op>]) -> Result<(), String> {
    for op in group.iter_mut() {
        exec(conn, "SAVEPOINT op")?;
        if !op.run(conn) {
            exec(conn, "ROLLBACK TO op")?;
        }
        exec(conn, "RELEASE op")?;
        if conn.is_autocommit() {
            // SQLite ended the transaction itself (disk full, I/O error): what ran
            // before is gone too, so nothing of this group may report success.
            return Err("the database rolled the transaction back".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join("w.db")).expect("open");
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .expect("schema");
        (dir, Writer::start(conn).expect("start"))
    }

    async fn count(w: &Writer) -> i64 {
        w.write(|c| {
            c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                .map_err(StoreError::from)
        })
        .await
        .expect("count")
    }

    #[tokio::test]
    async fn a_failed_operation_undoes_only_itself() {
        let (_dir, w) = writer();
        let insert = |k: &'static str| {
            let w = w.clone();
            async move {
                w.write(move |c| {
                    c.execute("INSERT INTO t (k) VALUES (?)", [k])
                        .map_err(StoreError::from)
                })
                .await
            }
        };
        // Concurrent, so they share groups: the duplicate fails alone.
        let (a, b, dup, d) = tokio::join!(insert("a"), insert("b"), insert("a"), insert("d"));
        assert!(a.is_ok() && b.is_ok() && d.is_ok());
        assert!(dup.is_err(), "a duplicate key is refused");
        assert_eq!(count(&w).await, 3);
        let err: Result<(), StoreError> = w
            .write(|c| {
                c.execute("INSERT INTO t (k) VALUES ('x')", [])?;
                Err(StoreError::InUse("changed its mind".into()))
            })
            .await;
        assert!(err.is_err());
        assert_eq!(count(&w).await, 3, "its insert was undone");
    }

    /// Each operation's savepoint journal stays in memory up to 4 MiB and a larger one
    /// goes to disk: the bundled SQLite's `SQLITE_STMTJRNL_SPILL`, set in
    /// `.cargo/config.toml`, which says why.
    #[test]
    fn the_bundled_sqlite_keeps_statement_journals_in_memory_up_to_4_mib() {
        let conn = Connection::open_in_memory().expect("open");
        let options: Vec<String> = conn
            .prepare("PRAGMA compile_options")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(
            options.iter().any(|o| o == "STMTJRNL_SPILL=4194304"),
            "built without LIBSQLITE3_FLAGS from .cargo/config.toml: {options:?}"
        );
    }

    #[tokio::test]
    async fn closing_answers_and_later_writes_fail_cleanly() {
        let (_dir, w) = writer();
        w.close().await;
        let late: Result<(), StoreError> = w.write(|_| Ok(())).await;
        assert!(matches!(late, Err(StoreError::Batch(_))));
    }
}
