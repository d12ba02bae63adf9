//! Hardened systemd units for `openmid mid install-service` and `openmid instance
//! install-service`: the daemon runs as its own unprivileged user, sees the file
//! system read-only except its state directory, has no capabilities, and may open
//! only IP and Unix sockets. `Type=simple`: openmid does not speak sd_notify.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Flags both `install-service` commands take.
#[derive(clap::Args)]
pub struct ServiceArgs {
    /// System user (and group) to run as; create it first, e.g. `useradd --system
    /// --no-create-home openmid-mid`.
    #[arg(long)]
    pub user: Option<String>,
    /// Where to write the unit [default: /etc/systemd/system/openmid-mid.service or
    /// openmid-instance.service].
    #[arg(long, visible_alias = "unit-file")]
    pub output: Option<PathBuf>,
    /// Print the unit instead of writing it.
    #[arg(long)]
    pub dry_run: bool,
}

/// One daemon's unit.
pub struct Unit<'a> {
    /// `openmid-mid` or `openmid-instance`: the default user, the unit's and the
    /// state directory's name (`/var/lib/NAME`).
    pub name: &'a str,
    /// The `Description=`.
    pub description: String,
    /// The program's arguments after the binary (`mid --config …`).
    pub args: Vec<String>,
    /// The directory the daemon writes, as the config names it (relative paths are
    /// relative to the state directory, the unit's working directory).
    pub writes: &'a Path,
    /// Lets the daemon bind a port below 1024.
    pub bind_low_port: bool,
}

/// Quotes one `ExecStart=` word the way systemd reads it back.
fn quote(word: &str) -> String {
    format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Unit<'_> {
    /// `/var/lib/NAME`, which systemd makes (owned by the user) from `StateDirectory=`.
    fn state_directory(&self) -> PathBuf {
        Path::new("/var/lib").join(self.name)
    }

    /// The written directory as the daemon will see it.
    pub fn writes_absolute(&self) -> PathBuf {
        if self.writes.is_absolute() {
            self.writes.to_path_buf()
        } else {
            self.state_directory().join(self.writes)
        }
    }

    /// The unit's text.
    pub fn render(&self, exe: &Path, user: &str) -> String {
        let exec = std::iter::once(quote(&exe.display().to_string()))
            .chain(self.args.iter().map(|a| quote(a)))
            .collect::<Vec<_>>()
            .join(" ");
        let caps = if self.bind_low_port {
            "CAP_NET_BIND_SERVICE"
        } else {
            ""
        };
        let state = self.state_directory();
        let writes = self.writes_absolute();
        let mut read_write = vec![state.clone()];
        if !writes.starts_with(&state) {
            read_write.push(writes);
        }
        let read_write = read_write
            .iter()
            .map(|p| quote(&p.display().to_string()))
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "# Written by `openmid {side} install-service`.\n\
             [Unit]\n\
             Description={description}\n\
             Wants=network-online.target\n\
             After=network-online.target\n\
             \n\
             [Service]\n\
             Type=simple\n\
             ExecStart={exec}\n\
             User={user}\n\
             Group={user}\n\
             WorkingDirectory={state}\n\
             Restart=on-failure\n\
             RestartSec=2\n\
             # SIGTERM lets running jobs finish and results reach the instance.\n\
             TimeoutStopSec=120\n\
             StateDirectory={name}\n\
             StateDirectoryMode=0700\n\
             ReadWritePaths={read_write}\n\
             UMask=0077\n\
             NoNewPrivileges=yes\n\
             ProtectSystem=strict\n\
             ProtectHome=yes\n\
             PrivateTmp=yes\n\
             PrivateDevices=yes\n\
             ProtectKernelTunables=yes\n\
             ProtectKernelModules=yes\n\
             ProtectKernelLogs=yes\n\
             ProtectControlGroups=yes\n\
             ProtectClock=yes\n\
             ProtectHostname=yes\n\
             RestrictNamespaces=yes\n\
             RestrictRealtime=yes\n\
             RestrictSUIDSGID=yes\n\
             LockPersonality=yes\n\
             CapabilityBoundingSet={caps}\n\
             AmbientCapabilities={caps}\n\
             RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            side = self.name.trim_start_matches("openmid-"),
            description = self.description,
            state = state.display(),
            name = self.name,
        )
    }

    /// Prints the unit (`--dry-run`) or writes it and says how to start it.
    pub fn install(&self, args: &ServiceArgs) -> Result<ExitCode> {
        let exe = std::env::current_exe().context("finding this program's path")?;
        let user = args.user.as_deref().unwrap_or(self.name);
        if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
            anyhow::bail!("--user `{user}`: give a system user name, without spaces");
        }
        let unit = self.render(&exe, user);
        if args.dry_run {
            print!("{unit}");
            return Ok(ExitCode::SUCCESS);
        }
        let output = args
            .output
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/etc/systemd/system/{}.service", self.name)));
        std::fs::write(&output, unit).with_context(|| format!("writing {}", output.display()))?;
        let file = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{}.service", self.name));
        println!("wrote {}", output.display());
        println!(
            "it runs as user {user} (create it with `useradd --system --no-create-home {user}` if needed) and writes only {}",
            self.writes_absolute().display()
        );
        println!("start it with: systemctl daemon-reload && systemctl enable --now {file}");
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_is_hardened_and_writes_only_its_state() {
        let unit = Unit {
            name: "openmid-mid",
            description: "openmid MID Server dc1".into(),
            args: vec![
                "mid".into(),
                "--config".into(),
                "/etc/openmid/mid.toml".into(),
            ],
            writes: Path::new("/srv/mid-state"),
            bind_low_port: false,
        };
        let text = unit.render(Path::new("/usr/bin/openmid"), "openmid-mid");
        for line in [
            "ExecStart=\"/usr/bin/openmid\" \"mid\" \"--config\" \"/etc/openmid/mid.toml\"\n",
            "User=openmid-mid\n",
            "NoNewPrivileges=yes\n",
            "ProtectSystem=strict\n",
            "ProtectHome=yes\n",
            "PrivateTmp=yes\n",
            "StateDirectory=openmid-mid\n",
            "ReadWritePaths=\"/var/lib/openmid-mid\" \"/srv/mid-state\"\n",
            "CapabilityBoundingSet=\n",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n",
            "Restart=on-failure\n",
            "Type=simple\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // A relative state directory lands in the unit's own state directory.
        let relative = Unit {
            writes: Path::new("state"),
            ..unit
        };
        assert_eq!(
            relative.writes_absolute(),
            PathBuf::from("/var/lib/openmid-mid/state")
        );
        let text = relative.render(Path::new("/usr/bin/openmid"), "u");
        assert!(
            text.contains("ReadWritePaths=\"/var/lib/openmid-mid\"\n"),
            "{text}"
        );
    }

    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(quote("/opt/my tools/openmid"), "\"/opt/my tools/openmid\"");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }
}
