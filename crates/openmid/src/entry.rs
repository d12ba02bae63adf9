//! What each binary's `main` does around its command: logging, the async runtime, and
//! the one error line it prints when the command fails.

use std::future::Future;
use std::process::ExitCode;

/// Starts logging at `default_level`, runs `command` on a multi-threaded runtime, and
/// turns its error into `error: …` on stderr and a failing exit code.
pub fn run<F>(default_level: &str, command: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    init_logging(default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, each said once: a cause whose text the
/// message before it already holds (a library that prints its source and also
/// returns it as `source()`) is left out.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || previous.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        previous = text;
    }
    out
}

/// Logs to stderr; `OPENMID_LOG` sets the filter (e.g. `debug`, `openmid_mid=debug`),
/// `OPENMID_LOG_FORMAT=json` switches to JSON lines.
fn init_logging(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("OPENMID_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("OPENMID_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
