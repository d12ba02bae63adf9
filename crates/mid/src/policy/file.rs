//! Which local files a job may read (`[policy.file]`): only those inside a directory
//! the operator listed. Nothing is readable by default — a MID runs with the rights of
//! its service account, which can usually read far more (its own keys among it) than
//! any import should.
//!
//! The path asked for is resolved first (symbolic links and `..`), and the result is
//! compared component by component with each allowed directory, itself resolved at
//! each check: a link inside an allowed directory that points out of it is refused, and
//! `/srv/imports-old` is not inside `/srv/imports`.

use super::denial::Denial;
use super::explain::Trace;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The `[policy.file]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Directories (and their subdirectories) whose files jobs may read; empty means
    /// none.
    pub allow_dirs: Vec<PathBuf>,
}

/// Why a file may not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileRefusal {
    /// A relative path would be read against the MID's working directory.
    #[error("the path must be absolute")]
    NotAbsolute,
    /// `policy.file.allow_dirs` is empty.
    #[error(
        "policy.file.allow_dirs is empty (the default: no local file may be read); add the directory there"
    )]
    NoneAllowed,
    /// The path does not resolve (missing, a broken link, or not readable).
    #[error("it cannot be resolved ({0}); it must be an existing file")]
    Unresolved(String),
    /// Resolved, it lies outside every allowed directory.
    #[error(
        "resolved (symbolic links and `..` followed) to {}, which is not inside any policy.file.allow_dirs entry; add its directory there",
        .0.display()
    )]
    Outside(PathBuf),
}

/// Resolves `path` and checks it lies inside one of `allow_dirs` (each resolved now):
/// the resolved path, to open instead of the one asked for. `trace` notes each step
/// for `check-policy`'s explanations.
pub(super) fn check(
    allow_dirs: &[PathBuf],
    path: &Path,
    trace: &mut Trace,
) -> Result<PathBuf, Denial> {
    let refuse = |reason| Denial::File {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_absolute() {
        return Err(refuse(FileRefusal::NotAbsolute));
    }
    if allow_dirs.is_empty() {
        return Err(refuse(FileRefusal::NoneAllowed));
    }
    let resolved = std::fs::canonicalize(path)
        .map_err(|e| refuse(FileRefusal::Unresolved(e.kind().to_string())))?;
    trace.note(|| format!("{} resolves to {}", path.display(), resolved.display()));
    for (i, dir) in allow_dirs.iter().enumerate() {
        let Ok(dir_resolved) = std::fs::canonicalize(dir) else {
            trace.note(|| {
                format!(
                    "policy.file.allow_dirs[{i}] ({}) does not resolve: skipped",
                    dir.display()
                )
            });
            continue;
        };
        // `Path::starts_with` compares whole components.
        if resolved.starts_with(&dir_resolved) {
            trace.note(|| {
                format!(
                    "inside policy.file.allow_dirs[{i}] ({})",
                    dir_resolved.display()
                )
            });
            return Ok(resolved);
        }
        trace.note(|| {
            format!(
                "not inside policy.file.allow_dirs[{i}] ({})",
                dir_resolved.display()
            )
        });
    }
    Err(refuse(FileRefusal::Outside(resolved)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_allowed_directories() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let allowed = root.path().join("imports");
        let sibling = root.path().join("imports-old");
        for d in [&allowed, &sibling] {
            std::fs::create_dir(d).unwrap_or_else(|e| panic!("{e}"));
        }
        let inside = allowed.join("a.csv");
        let outside = sibling.join("b.csv");
        for f in [&inside, &outside] {
            std::fs::write(f, "x\n").unwrap_or_else(|e| panic!("{e}"));
        }
        let link = allowed.join("link.csv");
        std::os::unix::fs::symlink(&outside, &link).unwrap_or_else(|e| panic!("{e}"));
        let dirs = vec![allowed.clone()];
        assert!(check(&dirs, &inside, &mut Trace::off()).is_ok());
        let dotdot = allowed.join("../imports-old/b.csv");
        for refused in [&outside, &link, &dotdot] {
            let e = check(&dirs, refused, &mut Trace::off()).err();
            assert!(
                matches!(
                    &e,
                    Some(Denial::File {
                        reason: FileRefusal::Outside(_),
                        ..
                    })
                ),
                "{refused:?}: {e:?}"
            );
        }
        let mut trace = Trace::on();
        assert!(check(&dirs, &link, &mut trace).is_err());
        let steps = trace.into_steps().join("\n");
        assert!(
            steps.contains("link.csv resolves to")
                && steps.contains("not inside policy.file.allow_dirs[0]"),
            "{steps}"
        );
        assert!(matches!(
            check(&[], &inside, &mut Trace::off()),
            Err(Denial::File {
                reason: FileRefusal::NoneAllowed,
                ..
            })
        ));
        assert!(matches!(
            check(&dirs, Path::new("a.csv"), &mut Trace::off()),
            Err(Denial::File {
                reason: FileRefusal::NotAbsolute,
                ..
            })
        ));
        assert!(matches!(
            check(&dirs, &allowed.join("missing.csv"), &mut Trace::off()),
            Err(Denial::File {
                reason: FileRefusal::Unresolved(_),
                ..
            })
        ));
    }
}
