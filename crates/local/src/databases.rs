//! A database of the test's own on this machine's PostgreSQL (127.0.0.1:5432, trust
//! for `postgres`) or MariaDB (127.0.0.1:3306, `root` without a password), made with
//! their own clients and dropped at the end: the SQL probe's and import tests' target
//! databases, and the PostgreSQL store's own.

use std::process::Command;

/// A database of its own, on the local PostgreSQL or MariaDB, dropped at the end.
pub struct Database {
    /// Its name.
    pub name: String,
    maria: bool,
    /// MariaDB logins made for it, dropped with it.
    users: Vec<String>,
}

impl Database {
    /// A fresh database on MariaDB (`maria`) or PostgreSQL; `None`, said loudly,
    /// when the server is not there.
    pub fn create(tag: &str, maria: bool) -> Option<Self> {
        let name = format!("openmid_e2e_{tag}_{}", std::process::id());
        let db = Self {
            name,
            maria,
            users: Vec::new(),
        };
        let _ = db.admin(&format!("DROP DATABASE IF EXISTS {}", db.name));
        if let Err(e) = db.admin(&format!("CREATE DATABASE {}", db.name)) {
            eprintln!(
                "SKIPPED: no {} on this machine ({e}); CI runs this test",
                if maria {
                    "MariaDB on 127.0.0.1:3306"
                } else {
                    "PostgreSQL on 127.0.0.1:5432"
                }
            );
            return None;
        }
        Some(db)
    }

    fn admin(&self, sql: &str) -> Result<(), String> {
        self.exec(if self.maria { "mysql" } else { "postgres" }, sql)
    }

    /// Runs setup SQL in it.
    pub fn run(&self, sql: &str) {
        self.exec(&self.name, sql).expect("statement runs");
    }

    /// Runs a query in it and returns what the client printed (unaligned, tuples only
    /// on PostgreSQL; tab-separated without column names on MariaDB).
    pub fn query(&self, sql: &str) -> String {
        let out = if self.maria {
            Command::new("mariadb")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-P",
                    "3306",
                    "-u",
                    "root",
                    "-N",
                    "-B",
                    &self.name,
                    "-e",
                    sql,
                ])
                .output()
        } else {
            Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    &self.name,
                    "-Atc",
                    sql,
                ])
                .output()
        }
        .expect("the database client runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn exec(&self, db: &str, sql: &str) -> Result<(), String> {
        let out = if self.maria {
            Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", db, "-e", sql])
                .output()
        } else {
            Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qc",
                    sql,
                ])
                .output()
        }
        .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A MariaDB login that may read this database only.
    pub fn create_reader(&mut self, user: &str, password: &str) {
        self.run(&format!(
            "CREATE OR REPLACE USER '{user}'@'%' IDENTIFIED BY '{password}'; GRANT SELECT ON {}.* TO '{user}'@'%'",
            self.name
        ));
        self.users.push(user.to_string());
    }

    /// Its URL as a jdbc alias's base.
    pub fn url(&self) -> String {
        if self.maria {
            format!("mysql://127.0.0.1:3306/{}", self.name)
        } else {
            format!("postgres://127.0.0.1:5432/{}", self.name)
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        for user in &self.users {
            let _ = self.admin(&format!("DROP USER IF EXISTS '{user}'@'%'"));
        }
        let drop = if self.maria {
            format!("DROP DATABASE IF EXISTS {}", self.name)
        } else {
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)
        };
        let _ = self.admin(&drop);
    }
}
