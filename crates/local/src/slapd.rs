//! A real OpenLDAP server on loopback for the LDAP probe's tests and `openmid bench`:
//! its own `slapd.conf`, mdb database, pid file and log in a temporary directory, on
//! free ports, seeded before it starts with `slapadd -q` (10 000 users load in about
//! a second). Optionally an LDAPS listener and StartTLS, with a test CA and a server
//! certificate for `localhost` made here. The server stops when this is dropped.
//!
//! The directory: suffix [`BASE_DN`], root DN [`ADMIN_DN`] / [`ADMIN_PASSWORD`], a
//! service account [`NOPAGE_DN`] that the server refuses the paged-results control
//! (a directory without paging, as far as its searches go), and the users under
//! `ou=people` → `ou=<region>` → `ou=<dept>`: `uid=userNNNNN` with `cn`, `sn`, two
//! `mail` values, `employeeNumber` (its index) and, every [`PHOTO_EVERY`]th, a
//! `jpegPhoto` whose bytes are not UTF-8.
//!
//! This file uses only the standard library, `rcgen`, `base64`, `tempfile` and
//! `thiserror`, so test crates that cannot depend on this crate (the MID's own: this
//! crate depends on it) include it by path.

use base64::Engine as _;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `slapd` puts the daemon.
pub const SLAPD: &str = "/usr/sbin/slapd";
/// …and its offline loader.
pub const SLAPADD: &str = "/usr/sbin/slapadd";
/// `ldap-utils`' client that adds, modifies and deletes.
pub const LDAPMODIFY: &str = "/usr/bin/ldapmodify";
/// The directory's suffix.
pub const BASE_DN: &str = "dc=example,dc=com";
/// Where the users are.
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=com";
/// The root DN.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
/// Its password.
pub const ADMIN_PASSWORD: &str = "Admin-pw-for-openmid-ldap-tests-31";
/// A service account whose searches may not use the paged-results control.
pub const NOPAGE_DN: &str = "uid=nopage,ou=service,dc=example,dc=com";
/// Its password.
pub const NOPAGE_PASSWORD: &str = "Nopage-pw-for-openmid-ldap-tests-77";
/// The regions users are spread over (`ou=<region>,ou=people`).
pub const REGIONS: [&str; 4] = ["emea", "amer", "apac", "latam"];
/// The departments in each region (`ou=<dept>,ou=<region>,ou=people`).
pub const DEPTS: [&str; 3] = ["eng", "sales", "ops"];
/// Every how many users one has a `jpegPhoto`.
pub const PHOTO_EVERY: u32 = 100;

/// Why a server could not be started or changed.
#[derive(Debug, thiserror::Error)]
pub enum SlapdError {
    /// `slapd` (or `slapadd`) is not installed.
    #[error("{SLAPD} is not installed (Debian: apt-get install slapd ldap-utils)")]
    Missing,
    /// A step failed.
    #[error("{step}: {detail}")]
    Step {
        /// What was being done.
        step: String,
        /// What went wrong.
        detail: String,
    },
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct SlapdOptions {
    /// Users seeded before it starts.
    pub users: u32,
    /// An LDAPS listener and StartTLS on the plain one, with a test CA.
    pub tls: bool,
}

impl Default for SlapdOptions {
    fn default() -> Self {
        Self {
            users: 100,
            tls: false,
        }
    }
}

/// A running server.
pub struct LocalSlapd {
    /// The plain (and StartTLS) listener's port on 127.0.0.1.
    pub port: u16,
    /// The LDAPS listener's port, with `tls`.
    pub ldaps_port: Option<u16>,
    /// The test CA's certificate, PEM, with `tls`. The server's certificate names
    /// `localhost` only, so a URL with `127.0.0.1` fails the host-name check.
    pub ca_pem: Option<String>,
    /// Users seeded.
    pub users: u32,
    dir: tempfile::TempDir,
    child: Child,
}

fn step(step: &str) -> impl FnOnce(std::io::Error) -> SlapdError + '_ {
    move |e| SlapdError::Step {
        step: step.to_string(),
        detail: e.to_string(),
    }
}

fn free_port() -> Result<u16, SlapdError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(step("finding a free port"))
}

fn run(program: &str, args: &[&str]) -> Result<(), SlapdError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(step(program))?;
    if !out.status.success() {
        return Err(SlapdError::Step {
            step: format!("{program} {}", args.join(" ")),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// The DN of user `i`.
pub fn user_dn(i: u32) -> String {
    format!("uid={},{}", user_uid(i), dept_dn(i))
}

/// The `uid` of user `i`.
pub fn user_uid(i: u32) -> String {
    format!("user{i:05}")
}

/// The department (`ou=<dept>,ou=<region>,ou=people,…`) user `i` is in.
pub fn dept_dn(i: u32) -> String {
    let region = REGIONS[i as usize % REGIONS.len()];
    let dept = DEPTS[(i as usize / REGIONS.len()) % DEPTS.len()];
    format!("ou={dept},ou={region},{PEOPLE_DN}")
}

/// The `jpegPhoto` bytes of user `i` (a JPEG's start: not UTF-8).
pub fn photo_of(i: u32) -> Vec<u8> {
    let mut bytes = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
    bytes.extend_from_slice(&i.to_be_bytes());
    bytes
}

/// LDIF of users `from..from + n`.
pub fn users_ldif(from: u32, n: u32) -> String {
    let mut out = String::new();
    for i in from..from.saturating_add(n) {
        let uid = user_uid(i);
        let _ = write!(
            out,
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: User {i:05}\nsn: {i:05}\n\
             mail: {uid}@example.com\nmail: {uid}@mail.example.com\nemployeeNumber: {i}\n",
            user_dn(i)
        );
        if i % PHOTO_EVERY == 0 {
            let photo = base64::engine::general_purpose::STANDARD.encode(photo_of(i));
            let _ = writeln!(out, "jpegPhoto:: {photo}");
        }
        out.push('\n');
    }
    out
}

/// LDIF of the suffix, the OUs and the service account.
fn tree_ldif() -> String {
    let mut out = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=service,{BASE_DN}\nobjectClass: organizationalUnit\nou: service\n\n\
         dn: {NOPAGE_DN}\nobjectClass: account\nobjectClass: simpleSecurityObject\nuid: nopage\n\
         userPassword: {NOPAGE_PASSWORD}\n\n"
    );
    for region in REGIONS {
        let _ = write!(
            out,
            "dn: ou={region},{PEOPLE_DN}\nobjectClass: organizationalUnit\nou: {region}\n\n"
        );
        for dept in DEPTS {
            let _ = write!(
                out,
                "dn: ou={dept},ou={region},{PEOPLE_DN}\nobjectClass: organizationalUnit\nou: {dept}\n\n"
            );
        }
    }
    out
}

/// A CA named `ca_name` and a server certificate for `localhost` it signed, as PEM:
/// CA, certificate, key.
fn make_certs(ca_name: &str) -> Result<(String, String, String), SlapdError> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let fail = |e: rcgen::Error| SlapdError::Step {
        step: "making the test certificates".into(),
        detail: e.to_string(),
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(fail)?)
        .map_err(fail)?;
    let key = KeyPair::generate().map_err(fail)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(fail)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).map_err(fail)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

/// Another CA, trusted by nothing here: for tests that a wrong `ca_pem` fails.
pub fn unrelated_ca_pem() -> Result<String, SlapdError> {
    make_certs("an unrelated CA").map(|(ca, _, _)| ca)
}

impl LocalSlapd {
    /// Starts a server as `opts` says.
    pub fn start(opts: &SlapdOptions) -> Result<Self, SlapdError> {
        if !Path::new(SLAPD).exists() || !Path::new(SLAPADD).exists() {
            return Err(SlapdError::Missing);
        }
        let dir = tempfile::Builder::new()
            .prefix("openmid-slapd-")
            .tempdir()
            .map_err(step("making the server's directory"))?;
        let d = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("db")).map_err(step("making the database"))?;
        let mut tls_lines = String::new();
        let ca_pem = if opts.tls {
            let (ca, cert, key) = make_certs("openmid LDAP test CA")?;
            for (name, pem) in [("ca.pem", &ca), ("server.pem", &cert), ("server.key", &key)] {
                std::fs::write(dir.path().join(name), pem)
                    .map_err(step("writing a certificate"))?;
            }
            tls_lines = format!(
                "TLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/server.pem\nTLSCertificateKeyFile {d}/server.key\n"
            );
            Some(ca)
        } else {
            None
        };
        let config = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
             pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             {tls_lines}sizelimit unlimited\n\
             database mdb\nmaxsize 1073741824\nsuffix \"{BASE_DN}\"\nrootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PASSWORD}\ndirectory {d}/db\nindex objectClass,uid eq\n\
             limits dn.exact=\"{NOPAGE_DN}\" size.prtotal=disabled\n\
             access to attrs=userPassword by self read by anonymous auth by * none\n\
             access to * by * read\n"
        );
        let conf = dir.path().join("slapd.conf");
        std::fs::write(&conf, config).map_err(step("writing slapd.conf"))?;
        let seed = dir.path().join("seed.ldif");
        std::fs::write(&seed, tree_ldif() + &users_ldif(0, opts.users))
            .map_err(step("writing the seed"))?;
        let (conf_s, seed_s) = (conf.display().to_string(), seed.display().to_string());
        run(SLAPADD, &["-q", "-f", &conf_s, "-l", &seed_s])?;
        let _ = std::fs::remove_file(&seed);
        let port = free_port()?;
        let ldaps_port = if opts.tls { Some(free_port()?) } else { None };
        let mut urls = format!("ldap://127.0.0.1:{port}/");
        if let Some(p) = ldaps_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        let log = std::fs::File::create(dir.path().join("slapd.log"))
            .map_err(step("creating the log"))?;
        let child = Command::new(SLAPD)
            .args(["-d", "0", "-f", &conf_s, "-h", &urls])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(step("starting slapd"))?;
        let server = Self {
            port,
            ldaps_port,
            ca_pem,
            users: opts.users,
            dir,
            child,
        };
        let until = Instant::now() + Duration::from_secs(10);
        for p in std::iter::once(port).chain(ldaps_port) {
            while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                if Instant::now() > until {
                    return Err(SlapdError::Step {
                        step: "waiting for slapd to listen".into(),
                        detail: server.log(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(server)
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://localhost:<port>` (the name the certificate holds), with `tls`.
    pub fn ldaps_url(&self) -> Option<String> {
        self.ldaps_port.map(|p| format!("ldaps://localhost:{p}"))
    }

    /// The directory's suffix.
    pub fn base_dn(&self) -> &'static str {
        BASE_DN
    }

    /// The root DN and its password.
    pub fn admin(&self) -> (&'static str, &'static str) {
        (ADMIN_DN, ADMIN_PASSWORD)
    }

    /// Applies LDIF change records (`changetype: add|modify|delete`) as the root DN.
    pub fn modify(&self, ldif: &str) -> Result<(), SlapdError> {
        if !Path::new(LDAPMODIFY).exists() {
            return Err(SlapdError::Missing);
        }
        let file = self.dir.path().join("change.ldif");
        std::fs::write(&file, ldif).map_err(step("writing the change"))?;
        let url = self.url();
        let f = file.display().to_string();
        run(
            LDAPMODIFY,
            &[
                "-x",
                "-H",
                &url,
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
                "-f",
                &f,
            ],
        )
    }

    /// Adds users `from..from + n` to the running server.
    pub fn add_users(&self, from: u32, n: u32) -> Result<(), SlapdError> {
        let ldif = users_ldif(from, n).replace("\nobjectClass:", "\nchangetype: add\nobjectClass:");
        self.modify(&ldif)
    }

    /// The server's own directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its pid file is.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("slapd.pid")
    }
}

impl Drop for LocalSlapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_spread_over_the_tree() {
        assert_eq!(
            user_dn(5),
            "uid=user00005,ou=sales,ou=amer,ou=people,dc=example,dc=com"
        );
        let ldif = users_ldif(0, 2);
        assert!(ldif.contains("jpegPhoto:: ") && ldif.matches("mail: ").count() == 4);
        assert!(std::str::from_utf8(&photo_of(1)).is_err());
    }
}
