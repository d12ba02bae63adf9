//! A test network whose hosts run real services, for the discovery tests and
//! `openmid bench discovery`: a [`TestNet`] of network namespaces on 198.18.0.0/24
//! where the caller says, per host, what runs there — OpenSSH's `sshd` on port 22
//! ([`LocalSshd`]), plain HTTP servers answering with a chosen `Server` header, HTTPS
//! servers with a self-signed certificate for chosen names, net-snmp's `snmpd` on UDP
//! 161 with a chosen `sysDescr`/`sysObjectID`/`sysName` ([`LocalSnmpd`]), and extra TCP
//! ports that accept (and, with a banner, say it). Each service listens on its host's
//! own address inside its namespace, so it answers from the root namespace (the
//! MID's side) through the bridge, as a machine on a LAN would.
//!
//! HTTP, HTTPS and the extra ports are one Python 3 process per host (`http.server`,
//! `ssl`, `socket`): a socket must be opened inside the namespace, which a child
//! started by `ip netns exec` is and a thread of this process is not. Everything is
//! stopped and deleted on drop. Needs root, iproute2, python3, and `sshd`/`snmpd` for
//! hosts that run them: without namespaces, [`TestNetworkError::Unavailable`], which
//! tests report loudly and skip on.

use crate::netns::{NetnsError, TestNet};
use crate::snmpd::{LocalSnmpd, SnmpdError, SnmpdOptions};
use crate::sshd::{LocalSshd, SshdError};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

/// What a host serves on a TCP port besides SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpService {
    /// Plain HTTP/1.1, every path `200 OK`, with this `Server` header.
    Http {
        /// The `Server` header.
        server: String,
    },
    /// HTTPS with a self-signed certificate for `names` (subject alternative names),
    /// with this `Server` header.
    Https {
        /// The `Server` header.
        server: String,
        /// The certificate's names (DNS names or IP addresses).
        names: Vec<String>,
    },
    /// Accepts, writes `banner` and a CRLF if there is one, and closes.
    Open {
        /// What it says first, if anything.
        banner: Option<String>,
    },
}

/// An SNMP agent's identity: its `system` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnmpIdentity {
    /// `sysDescr.0`.
    pub sys_descr: String,
    /// `sysObjectID.0`, dotted, without a leading dot.
    pub sys_object_id: String,
    /// `sysName.0`.
    pub sys_name: String,
}

/// What one host runs.
#[derive(Debug, Clone, Default)]
pub struct HostSpec {
    /// `sshd` on port 22.
    pub ssh: bool,
    /// Other TCP services, by port.
    pub tcp: BTreeMap<u16, TcpService>,
    /// `snmpd` on UDP 161 (read community [`crate::snmpd::COMMUNITY`]).
    pub snmp: Option<SnmpIdentity>,
    /// The host's link is down after its net is made: it runs nothing and answers
    /// nothing, like a machine that is switched off.
    pub down: bool,
}

impl HostSpec {
    /// A host that answers pings and runs nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// …running `sshd` on port 22.
    pub fn ssh(mut self) -> Self {
        self.ssh = true;
        self
    }

    /// …serving HTTP on `port` with the `Server` header `server`.
    pub fn http(mut self, port: u16, server: &str) -> Self {
        self.tcp.insert(
            port,
            TcpService::Http {
                server: server.into(),
            },
        );
        self
    }

    /// …serving HTTPS on `port`, its certificate for `names`.
    pub fn https(mut self, port: u16, server: &str, names: &[&str]) -> Self {
        self.tcp.insert(
            port,
            TcpService::Https {
                server: server.into(),
                names: names.iter().map(|n| n.to_string()).collect(),
            },
        );
        self
    }

    /// …accepting on each of `ports` and saying nothing.
    pub fn open(mut self, ports: &[u16]) -> Self {
        for p in ports {
            self.tcp.insert(*p, TcpService::Open { banner: None });
        }
        self
    }

    /// …accepting on `port` and writing `banner` first.
    pub fn banner(mut self, port: u16, banner: &str) -> Self {
        self.tcp.insert(
            port,
            TcpService::Open {
                banner: Some(banner.into()),
            },
        );
        self
    }

    /// …running `snmpd` with this `system` group.
    pub fn snmp(mut self, sys_descr: &str, sys_object_id: &str, sys_name: &str) -> Self {
        self.snmp = Some(SnmpIdentity {
            sys_descr: sys_descr.into(),
            sys_object_id: sys_object_id.trim_start_matches('.').into(),
            sys_name: sys_name.into(),
        });
        self
    }

    /// …with its link down.
    pub fn down(mut self) -> Self {
        self.down = true;
        self
    }

    /// The TCP ports this host has open (none when down).
    pub fn open_ports(&self) -> BTreeSet<u16> {
        if self.down {
            return BTreeSet::new();
        }
        let mut ports: BTreeSet<u16> = self.tcp.keys().copied().collect();
        if self.ssh {
            ports.insert(22);
        }
        ports
    }
}

/// Why a test network could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestNetworkError {
    /// No network namespaces here (not root, no iproute2): tests skip, loudly.
    #[error(
        "SKIPPED: network namespaces are unavailable ({0}); run as root with iproute2 installed"
    )]
    Unavailable(String),
    /// Making the net failed.
    #[error("the test net: {0}")]
    Net(#[from] NetnsError),
    /// An `sshd` did not start.
    #[error("sshd on host {host}: {error}")]
    Sshd {
        /// The host.
        host: u8,
        /// Why.
        error: SshdError,
    },
    /// An `snmpd` did not start.
    #[error("snmpd on host {host}: {error}")]
    Snmpd {
        /// The host.
        host: u8,
        /// Why.
        error: SnmpdError,
    },
    /// Another step failed.
    #[error("{step}: {detail}")]
    Step {
        /// What was being done.
        step: String,
        /// What went wrong.
        detail: String,
    },
}

fn step(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestNetworkError {
    let step = what.into();
    move |e| TestNetworkError::Step {
        step,
        detail: e.to_string(),
    }
}

/// One host's HTTP, HTTPS and plain listeners. Arguments: the address, then
/// `open:PORT:BANNER` (empty banner: none), `http:PORT:SERVER` and
/// `https:PORT:CERT:KEY:SERVER`. TLS handshakes happen in each connection's own
/// thread, so a client that connects and never speaks (a port scanner) holds up no
/// one.
const SERVICES: &str = r#"
import http.server, socket, ssl, sys, threading
addr = sys.argv[1]
def handler_for(server_header):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def version_string(self):
            return server_header
        def log_message(self, *args):
            pass
        def do_GET(self):
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_HEAD = do_GET
    return Handler
class Http(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    def handle_error(self, request, client_address):
        pass
class Https(Http):
    context = None
    def finish_request(self, request, client_address):
        request.settimeout(10)
        conn = self.context.wrap_socket(request, server_side=True)
        self.RequestHandlerClass(conn, client_address, self)
def serve_open(port, banner):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1024)
    while True:
        c, _ = s.accept()
        try:
            if banner:
                c.sendall(banner.encode() + b"\r\n")
        except OSError:
            pass
        c.close()
for spec in sys.argv[2:]:
    kind, rest = spec.split(":", 1)
    if kind == "open":
        port, banner = rest.split(":", 1)
        threading.Thread(target=serve_open, args=(int(port), banner), daemon=True).start()
    elif kind == "http":
        port, server = rest.split(":", 1)
        s = Http((addr, int(port)), handler_for(server))
        threading.Thread(target=s.serve_forever, daemon=True).start()
    elif kind == "https":
        port, cert, key, server = rest.split(":", 3)
        s = Https((addr, int(port)), handler_for(server))
        s.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        s.context.load_cert_chain(cert, key)
        threading.Thread(target=s.serve_forever, daemon=True).start()
threading.Event().wait()
"#;

/// A running test network; everything in it stops and is deleted on drop.
pub struct TestNetwork {
    // Dropped in this order: the agents and servers first, then the net (which kills
    // the Python listeners it started and deletes the namespaces), then the files.
    sshd: BTreeMap<u8, LocalSshd>,
    snmpd: BTreeMap<u8, LocalSnmpd>,
    certs: BTreeMap<(u8, u16), String>,
    specs: Vec<HostSpec>,
    net: TestNet,
    dir: tempfile::TempDir,
}

impl TestNetwork {
    /// Makes a net of one host per spec (host `n` at `198.18.0.(10+n)`), starts what
    /// each spec says and returns once every service answers from the root
    /// namespace. `prefix` names the namespaces (1–4 lowercase letters or digits).
    pub fn start(prefix: &str, specs: &[HostSpec]) -> Result<Self, TestNetworkError> {
        let hosts = u8::try_from(specs.len()).map_err(|_| TestNetworkError::Step {
            step: "making the test net".into(),
            detail: format!("{} hosts is more than a /24 holds", specs.len()),
        })?;
        let net = match TestNet::create(prefix, hosts) {
            Ok(net) => net,
            Err(NetnsError::Unavailable(why)) => return Err(TestNetworkError::Unavailable(why)),
            Err(e) => return Err(e.into()),
        };
        let dir = tempfile::Builder::new()
            .prefix("openmid-testnet-")
            .tempdir()
            .map_err(step("making the network's directory"))?;
        let mut network = Self {
            sshd: BTreeMap::new(),
            snmpd: BTreeMap::new(),
            certs: BTreeMap::new(),
            specs: specs.to_vec(),
            net,
            dir,
        };
        for (n, spec) in specs.iter().enumerate() {
            let n = n as u8;
            if spec.down {
                network.net.set_down(n)?;
                continue;
            }
            network.start_listeners(n, spec)?;
            if spec.ssh {
                let dir = network.dir.path().join(format!("sshd-{n}"));
                std::fs::create_dir(&dir).map_err(step("making an sshd's directory"))?;
                let sshd = LocalSshd::start_in_namespace(
                    &dir,
                    &network.net.namespace(n),
                    &network.net.addr(n),
                    22,
                )
                .map_err(|error| TestNetworkError::Sshd { host: n, error })?;
                network.sshd.insert(n, sshd);
            }
            if let Some(id) = &spec.snmp {
                let agent = LocalSnmpd::start_with(&SnmpdOptions {
                    host: network.net.addr(n),
                    port: Some(161),
                    namespace: Some(network.net.namespace(n)),
                    sys_descr: id.sys_descr.clone(),
                    sys_object_id: id.sys_object_id.clone(),
                    sys_name: id.sys_name.clone(),
                })
                .map_err(|error| TestNetworkError::Snmpd { host: n, error })?;
                network.snmpd.insert(n, agent);
            }
        }
        for (n, spec) in specs.iter().enumerate() {
            for port in spec.tcp.keys().filter(|_| !spec.down) {
                network.wait_listening(n as u8, *port)?;
            }
        }
        Ok(network)
    }

    fn start_listeners(&mut self, n: u8, spec: &HostSpec) -> Result<(), TestNetworkError> {
        if spec.tcp.is_empty() {
            return Ok(());
        }
        let mut args = Vec::new();
        for (port, service) in &spec.tcp {
            args.push(match service {
                TcpService::Open { banner } => {
                    format!("open:{port}:{}", banner.as_deref().unwrap_or_default())
                }
                TcpService::Http { server } => format!("http:{port}:{server}"),
                TcpService::Https { server, names } => {
                    let (cert, key) = self.write_cert(n, *port, names)?;
                    format!("https:{port}:{cert}:{key}:{server}")
                }
            });
        }
        let mut python = Command::new("python3");
        python.args(["-c", SERVICES, &self.net.addr(n)]).args(args);
        self.net.spawn_in(n, python)?;
        Ok(())
    }

    /// A self-signed certificate for `names`, written as PEM files; their paths.
    fn write_cert(
        &mut self,
        n: u8,
        port: u16,
        names: &[String],
    ) -> Result<(String, String), TestNetworkError> {
        let certified = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| {
            TestNetworkError::Step {
                step: format!("making the certificate of host {n} port {port}"),
                detail: e.to_string(),
            }
        })?;
        let cert = self.dir.path().join(format!("https-{n}-{port}.crt"));
        let key = self.dir.path().join(format!("https-{n}-{port}.key"));
        let pem = certified.cert.pem();
        std::fs::write(&cert, &pem).map_err(step("writing a certificate"))?;
        std::fs::write(&key, certified.signing_key.serialize_pem())
            .map_err(step("writing a key"))?;
        self.certs.insert((n, port), pem);
        Ok((cert.display().to_string(), key.display().to_string()))
    }

    fn wait_listening(&self, n: u8, port: u16) -> Result<(), TestNetworkError> {
        let target = std::net::SocketAddr::from((self.ip(n), port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err(TestNetworkError::Step {
                    step: format!("waiting for {target} to listen"),
                    detail: "nothing accepted within 20 s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn ip(&self, n: u8) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(198, 18, 0, crate::netns::HOST_BASE + n)
    }

    /// The namespaces underneath (to take a host down, or start more in one).
    pub fn net(&self) -> &TestNet {
        &self.net
    }

    /// How many hosts.
    pub fn hosts(&self) -> u8 {
        self.net.hosts()
    }

    /// Host `n`'s address.
    pub fn addr(&self, n: u8) -> String {
        self.net.addr(n)
    }

    /// What host `n` was asked to run.
    pub fn spec(&self, n: u8) -> Option<&HostSpec> {
        self.specs.get(usize::from(n))
    }

    /// Host `n`'s `sshd` (its keys and known_hosts file), if it runs one.
    pub fn sshd(&self, n: u8) -> Option<&LocalSshd> {
        self.sshd.get(&n)
    }

    /// Host `n`'s `snmpd`, if it runs one.
    pub fn snmpd(&self, n: u8) -> Option<&LocalSnmpd> {
        self.snmpd.get(&n)
    }

    /// The PEM certificate host `n` presents on `port`, if it serves HTTPS there.
    pub fn https_cert_pem(&self, n: u8, port: u16) -> Option<&str> {
        self.certs.get(&(n, port)).map(String::as_str)
    }

    /// The open TCP ports among `ports`, by address, of every host up: what a correct
    /// scan of those ports finds (hosts with none of them open are left out).
    pub fn expected_open(&self, ports: &[u16]) -> BTreeMap<String, BTreeSet<u16>> {
        let mut want = BTreeMap::new();
        for (n, spec) in self.specs.iter().enumerate() {
            let open: BTreeSet<u16> = spec
                .open_ports()
                .into_iter()
                .filter(|p| ports.contains(p))
                .collect();
            if !open.is_empty() {
                want.insert(self.addr(n as u8), open);
            }
        }
        want
    }

    /// The addresses of the hosts up.
    pub fn up(&self) -> BTreeSet<String> {
        (0..self.hosts())
            .filter(|n| self.spec(*n).is_some_and(|s| !s.down))
            .map(|n| self.addr(n))
            .collect()
    }
}

#[cfg(test)]
mod tests;
