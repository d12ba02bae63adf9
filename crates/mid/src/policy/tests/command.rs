//! Command rules: entries, argument patterns, interpreters, working directories.

use super::*;

#[test]
fn commands_run_only_as_an_entry_allows() {
    let p = commands();
    let df = Path::new("/usr/bin/df");
    let ok = p.check_command(df, &["-h", "/", "/home"], None, &["LANG", "LC_ALL"], None);
    assert_eq!(
        ok,
        Ok(Allowed {
            timeout: Duration::from_secs(30),
            rule: "policy.command.programs[0]".into(),
            cwd: None,
        })
    );
    let second = p.check_command(df, &["-i"], None, NONE, Some(Duration::from_secs(5)));
    assert_eq!(
        second.map(|a| (a.rule, a.timeout)),
        Ok(("policy.command.programs[1]".into(), Duration::from_secs(5)))
    );
    // Arguments and variable names may be of different string types (a job's Vec<String>).
    let names = vec![String::from("LC_TIME")];
    assert!(p.check_command(df, &["-h"], None, &names, None).is_ok());
    let tail = Path::new("/usr/bin/tail");
    assert!(
        p.check_command(tail, &["-n", "20", "/var/log/syslog.log"], None, NONE, None)
            .is_ok()
    );
    // Neither entry allows `df -x`; both say why, without showing the argument.
    let d = denial(p.check_command(df, &["-x", "s3cret"], None, NONE, None));
    assert_eq!(
        d.to_string(),
        "egress policy refuses running /usr/bin/df: no entry allows this run: \
         policy.command.programs[0]: argument 0 does not match args[0] (`-h`); \
         policy.command.programs[1]: 2 arguments given, its args patterns allow 1 \
         (end them with \"**\" to allow more)"
    );
    assert!(!d.to_string().contains("s3cret"));
    let d = denial(p.check_command(tail, &["-n", "1", "/etc/shadow"], None, NONE, None));
    assert!(
        d.to_string()
            .contains("argument 2 does not match args[2] (`/var/log/*.log`)"),
        "{d}"
    );
    let d = denial(p.check_command(tail, &["-n"], None, NONE, None));
    assert!(
        d.to_string()
            .contains("1 arguments given, its args patterns need 3"),
        "{d}"
    );
    let d = denial(p.check_command(df, &["-h"], None, &["LD_PRELOAD"], None));
    assert!(
        d.to_string()
            .contains("environment variable LD_PRELOAD is not in its env list"),
        "{d}"
    );
    let d = denial(p.check_command(df, &["-h"], None, NONE, Some(Duration::from_millis(30_500))));
    assert!(
        d.to_string()
            .contains("a run time of 31 s was asked for, its max_runtime_secs is 30"),
        "{d}"
    );
    let d = denial(p.check_command(Path::new("/usr/bin/rm"), &["-rf", "/"], None, NONE, None));
    assert!(
        matches!(
            d,
            Denial::Command {
                reason: CommandRefusal::NotListed,
                ..
            }
        ),
        "{d}"
    );
    for relative in ["df", "./df", "/usr/bin/../bin/df"] {
        let d = denial(p.check_command(Path::new(relative), &["-h"], None, NONE, None));
        assert!(
            matches!(
                d,
                Denial::Command {
                    reason: CommandRefusal::NotAbsolute,
                    ..
                }
            ),
            "{d}"
        );
    }
}

#[test]
fn scripts_run_only_by_listed_interpreters_within_their_entry() {
    let p = commands();
    let sh = Path::new("/bin/sh");
    let ok = p.check_script(sh, &["-e"], None, NONE, None);
    assert_eq!(ok.map(|a| a.timeout), Ok(Duration::from_secs(120)));
    let d = denial(p.check_script(sh, NONE, None, NONE, None));
    assert!(
        d.to_string()
            .contains("policy.command.programs[3]: 0 arguments given"),
        "{d}"
    );
    let d = denial(p.check_script(Path::new("/usr/bin/df"), &["-h"], None, NONE, None));
    assert!(
        matches!(
            d,
            Denial::Command {
                reason: CommandRefusal::NotInterpreter,
                ..
            }
        ),
        "{d}"
    );
    // The entry for /bin/sh does not allow `-c <anything>` as a plain command either.
    assert!(
        p.check_command(sh, &["-c", "curl evil"], None, NONE, None)
            .is_err()
    );
}

#[test]
fn working_directories_must_resolve_inside_an_allowed_prefix() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let work = root.path().join("work");
    let outside = root.path().join("outside");
    for dir in [&work, &work.join("job1"), &outside] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    }
    let link = work.join("escape");
    std::os::unix::fs::symlink(&outside, &link).unwrap_or_else(|e| panic!("{e}"));
    let p = policy(&format!(
        "[[policy.command.programs]]\npath = \"/bin/ls\"\ncwd = [\"{}\", \"{}\"]\n\
         [[policy.command.programs]]\npath = \"/bin/pwd\"\n",
        root.path().join("missing").display(),
        work.display()
    ));
    let ls = Path::new("/bin/ls");
    assert!(p.check_command(ls, NONE, Some(&work), NONE, None).is_ok());
    // A link inside the prefix to a directory inside it is fine, and the run is told
    // where it really is.
    let alias = work.join("alias");
    std::os::unix::fs::symlink(work.join("job1"), &alias).unwrap_or_else(|e| panic!("{e}"));
    let real = std::fs::canonicalize(work.join("job1")).unwrap_or_else(|e| panic!("{e}"));
    let allowed = p.check_command(ls, NONE, Some(&alias), NONE, None);
    assert_eq!(allowed.map(|a| a.cwd), Ok(Some(real)));
    assert!(
        p.check_command(ls, NONE, Some(&work.join("job1")), NONE, None)
            .is_ok()
    );
    assert!(p.check_command(ls, NONE, None, NONE, None).is_ok());
    let refused = |cwd: &Path| denial(p.check_command(ls, NONE, Some(cwd), NONE, None)).to_string();
    assert!(refused(&outside).contains("is not inside any of its cwd entries"));
    assert!(refused(&link).contains("is not inside any of its cwd entries"));
    assert!(refused(&work.join("job1/../../outside")).contains("not inside"));
    assert!(refused(&work.join("nope")).contains("it must be an existing absolute path"));
    assert!(refused(Path::new("work")).contains("it must be an existing absolute path"));
    let work_sibling = root.path().join("workshop");
    std::fs::create_dir_all(&work_sibling).unwrap_or_else(|e| panic!("{e}"));
    assert!(refused(&work_sibling).contains("not inside"));
    let d = denial(p.check_command(Path::new("/bin/pwd"), NONE, Some(&work), NONE, None));
    assert!(d.to_string().contains("the entry has no cwd list"), "{d}");
}
