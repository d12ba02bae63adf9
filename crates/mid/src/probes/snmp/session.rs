//! A conversation with one agent: requests numbered, wrapped in a community message
//! (v1, v2c) or a USM message (v3: engine discovery, timeliness, HMAC, AES), sent
//! through the [transport](super::transport), and answers checked before they are
//! taken. Secrets stay in [`Secret`]s and localized keys in `Zeroizing` buffers; no
//! error quotes one.

use super::ber::{self, Pdu, Value, tag};
use super::transport::Transport;
use super::usm::{self, AuthProtocol, PrivProtocol};
use super::v3::{self, Data, SecParams};
use crate::probes::ProbeError;
use openmid_proto::secret::Secret;
use std::time::Instant;
use zeroize::Zeroizing;

/// A v3 user.
pub struct User {
    /// The name.
    pub name: String,
    /// Authentication.
    pub auth: Option<(AuthProtocol, Secret)>,
    /// Privacy (needs authentication).
    pub privacy: Option<(PrivProtocol, Secret)>,
}

/// How messages are secured.
pub enum Security {
    /// v1 (0) or v2c (1) with a community.
    Community {
        /// 0 or 1.
        version: i64,
        /// The community.
        community: Secret,
    },
    /// v3 USM.
    Usm {
        /// The user.
        user: User,
        /// The context name.
        context: Vec<u8>,
    },
}

/// What the agent's engine is, once discovered.
struct Engine {
    id: Vec<u8>,
    boots: i64,
    time: i64,
    at: Instant,
    auth_key: Option<Zeroizing<Vec<u8>>>,
    priv_key: Option<Zeroizing<Vec<u8>>>,
}

/// A session with one agent.
pub struct Session {
    transport: Transport,
    security: Security,
    next_id: i32,
    salt: u64,
    engine: Option<Engine>,
}

const REPORTS: [(&[u32], &str); 6] = [
    (
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 1, 0],
        "the security level is not supported for this user",
    ),
    (
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0],
        "the message was outside the agent's time window",
    ),
    (
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 3, 0],
        "the agent does not know this user",
    ),
    (
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0],
        "the agent does not know this engine id",
    ),
    (
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 5, 0],
        "authentication failed (wrong auth password or protocol)",
    ),
    (
        &[1, 3, 6, 1, 6, 3, 15, 1, 1, 6, 0],
        "the agent could not decrypt the request (wrong privacy password or protocol)",
    ),
];
const NOT_IN_TIME_WINDOW: &[u32] = &[1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0];

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Without randomness request ids still start somewhere; they only match answers.
    let _ = aws_lc_rs::rand::fill(&mut b);
    u64::from_be_bytes(b)
}

impl Session {
    /// A session over `transport`.
    pub fn new(transport: Transport, security: Security) -> Self {
        let r = random_u64();
        Self {
            transport,
            security,
            next_id: (r as i32 & 0x3fff_ffff).max(1),
            salt: r.rotate_left(17),
            engine: None,
        }
    }

    /// The agent's engine id, once v3 discovered it.
    pub fn engine_id(&self) -> Option<&[u8]> {
        self.engine.as_ref().map(|e| e.id.as_slice())
    }

    /// Whether this is SNMPv1 (no get-bulk, errors instead of exceptions).
    pub fn is_v1(&self) -> bool {
        matches!(self.security, Security::Community { version: 0, .. })
    }

    fn take_id(&mut self) -> i32 {
        let id = self.next_id;
        self.next_id = if id >= 0x7fff_fff0 { 1 } else { id + 1 };
        id
    }

    /// Sends a request of `kind` for `oids` (get-bulk: `bulk` is non-repeaters and
    /// max-repetitions) and returns the agent's response PDU.
    pub async fn request(
        &mut self,
        kind: u8,
        oids: &[Vec<u32>],
        bulk: (i64, i64),
    ) -> Result<Pdu, ProbeError> {
        let pdu = Pdu {
            kind,
            request_id: self.take_id(),
            error_status: bulk.0,
            error_index: bulk.1,
            varbinds: oids.iter().map(|o| (o.clone(), Value::Null)).collect(),
        };
        let got = if matches!(self.security, Security::Usm { .. }) {
            self.usm_request(&pdu).await?
        } else {
            let Security::Community { version, community } = &self.security else {
                return Err(ProbeError::Target("not a community session".into()));
            };
            {
                let msg = ber::community_message(*version, community.expose().as_bytes(), &pdu);
                let (version, id) = (*version, pdu.request_id);
                self.transport
                    .exchange(&msg, |bytes| {
                        let (v, _, p) = ber::read_community_message(bytes).ok()?;
                        (v == version && p.request_id == id && p.kind == tag::RESPONSE).then_some(p)
                    })
                    .await?
            }
        };
        if got.error_status != 0 && !(self.is_v1() && got.error_status == 2) {
            return Err(ProbeError::Target(format!(
                "the agent at {} answered with error {} ({}) at varbind {}",
                self.transport.shown,
                got.error_status,
                error_name(got.error_status),
                got.error_index
            )));
        }
        Ok(got)
    }

    /// Discovers the agent's engine id, boots and time (RFC 3414 §4) and localizes
    /// the user's keys to it.
    async fn discover(&mut self) -> Result<(), ProbeError> {
        let request_id = self.take_id();
        let Security::Usm { user, .. } = &self.security else {
            return Ok(());
        };
        let pdu = Pdu {
            kind: tag::GET,
            request_id,
            error_status: 0,
            error_index: 0,
            varbinds: Vec::new(),
        };
        let msg_id = i64::from(pdu.request_id);
        let msg = v3::encode(
            msg_id,
            v3::REPORTABLE,
            &SecParams::default(),
            &Data::Plain(v3::scoped_pdu(&[], &[], &pdu)),
        );
        let found = self
            .transport
            .exchange(&msg, |bytes| {
                let m = v3::decode(bytes).ok()?;
                (m.msg_id == msg_id && !m.sec.engine_id.is_empty()).then_some(m.sec)
            })
            .await?;
        let auth_key = user
            .auth
            .as_ref()
            .map(|(p, pw)| usm::localized_key(*p, pw.expose().as_bytes(), &found.engine_id));
        let priv_key = match (&user.auth, &user.privacy) {
            (Some((p, _)), Some((_, pw))) => Some(usm::localized_key(
                *p,
                pw.expose().as_bytes(),
                &found.engine_id,
            )),
            _ => None,
        };
        self.engine = Some(Engine {
            id: found.engine_id,
            boots: found.boots,
            time: found.time,
            at: Instant::now(),
            auth_key,
            priv_key,
        });
        Ok(())
    }

    async fn usm_request(&mut self, pdu: &Pdu) -> Result<Pdu, ProbeError> {
        if self.engine.is_none() {
            self.discover().await?;
        }
        // A second try after a notInTimeWindow report, with the agent's clock.
        for _ in 0..2 {
            let msg = self.usm_message(pdu)?;
            let msg_id = i64::from(pdu.request_id);
            let Security::Usm { user, .. } = &self.security else {
                return Err(ProbeError::Target("not a v3 session".into()));
            };
            let engine = self.engine.as_ref().ok_or_else(|| {
                ProbeError::Target("the agent's engine was not discovered".into())
            })?;
            let auth = user.auth.as_ref().map(|(p, _)| *p);
            let answer = self
                .transport
                .exchange(&msg, |bytes| {
                    let m = v3::decode(bytes).ok()?;
                    if m.msg_id != msg_id {
                        return None;
                    }
                    if m.flags & v3::AUTH == 0 && auth.is_some() {
                        // Only a report (a refusal) may come back unauthenticated to
                        // an authenticated request; anything else could be forged.
                        let Data::Plain(plain) = &m.data else {
                            return None;
                        };
                        if !v3::read_scoped(plain).is_ok_and(|p| p.kind == tag::REPORT) {
                            tracing::warn!("an unauthenticated SNMPv3 answer to an authenticated request was ignored");
                            return None;
                        }
                    }
                    if m.flags & v3::AUTH != 0 {
                        let (proto, key) = (auth?, engine.auth_key.as_ref()?);
                        let mut zeroed = bytes.to_vec();
                        zeroed.get_mut(m.auth_range.clone())?.fill(0);
                        if !usm::verify(proto, key, &zeroed, &m.sec.auth) {
                            tracing::warn!(
                                "an SNMPv3 answer failed its authentication check: ignored"
                            );
                            return None;
                        }
                    }
                    Some(m)
                })
                .await?;
            let plain = match &answer.data {
                Data::Plain(p) => p.clone(),
                Data::Encrypted(c) => {
                    let key = engine.priv_key.as_ref().ok_or_else(|| {
                        ProbeError::Target(
                            "the agent sent an encrypted answer to a request without privacy"
                                .into(),
                        )
                    })?;
                    usm::decrypt(
                        key,
                        answer.sec.boots as u32,
                        answer.sec.time as u32,
                        &answer.sec.privacy,
                        c,
                    )
                    .map_err(|e| {
                        ProbeError::Target(format!("the answer from {}: {e}", self.transport.shown))
                    })?
                }
            };
            let got = v3::read_scoped(&plain).map_err(|e| {
                ProbeError::Target(format!("the answer from {}: {e}", self.transport.shown))
            })?;
            if got.kind == tag::REPORT {
                let oid = got.varbinds.first().map(|(o, _)| o.as_slice());
                if oid == Some(NOT_IN_TIME_WINDOW)
                    && let Some(e) = self.engine.as_mut()
                {
                    e.boots = answer.sec.boots;
                    e.time = answer.sec.time;
                    e.at = Instant::now();
                    continue;
                }
                let why = REPORTS
                    .iter()
                    .find(|(o, _)| Some(*o) == oid)
                    .map_or("the agent refused the request", |(_, w)| w);
                let user_name = match &self.security {
                    Security::Usm { user, .. } => user.name.as_str(),
                    Security::Community { .. } => "",
                };
                return Err(ProbeError::Credential(format!(
                    "SNMPv3 user `{user_name}` at {}: {why}",
                    self.transport.shown
                )));
            }
            if got.request_id != pdu.request_id {
                return Err(ProbeError::Target(format!(
                    "the agent at {} answered another request",
                    self.transport.shown
                )));
            }
            return Ok(got);
        }
        Err(ProbeError::Target(format!(
            "the agent at {} keeps reporting the request outside its time window",
            self.transport.shown
        )))
    }

    /// The request's v3 message, signed (and its PDU encrypted) as the user says.
    fn usm_message(&mut self, pdu: &Pdu) -> Result<Vec<u8>, ProbeError> {
        self.salt = self.salt.wrapping_add(1);
        let salt = self.salt.to_be_bytes();
        let Security::Usm { user, context } = &self.security else {
            return Err(ProbeError::Target("not a v3 session".into()));
        };
        let engine = self
            .engine
            .as_ref()
            .ok_or_else(|| ProbeError::Target("the agent's engine was not discovered".into()))?;
        let time = engine.time + engine.at.elapsed().as_secs() as i64;
        let mut flags = v3::REPORTABLE;
        let mut sec = SecParams {
            engine_id: engine.id.clone(),
            boots: engine.boots,
            time,
            user: user.name.as_bytes().to_vec(),
            auth: Vec::new(),
            privacy: Vec::new(),
        };
        let scoped = v3::scoped_pdu(&engine.id, context, pdu);
        let data = match (&user.auth, &engine.priv_key) {
            (Some(_), Some(key)) => {
                flags |= v3::AUTH | v3::PRIV;
                sec.privacy = salt.to_vec();
                Data::Encrypted(
                    usm::encrypt(key, engine.boots as u32, time as u32, &salt, &scoped)
                        .map_err(|e| ProbeError::Target(e.to_string()))?,
                )
            }
            (Some(_), None) => {
                flags |= v3::AUTH;
                Data::Plain(scoped)
            }
            _ => Data::Plain(scoped),
        };
        if let (Some((proto, _)), Some(key)) = (&user.auth, &engine.auth_key) {
            sec.auth = vec![0; proto.mac_len()];
            let mut msg = v3::encode(i64::from(pdu.request_id), flags, &sec, &data);
            let range = v3::decode(&msg)
                .map_err(|e| ProbeError::Target(e.to_string()))?
                .auth_range;
            let mac = usm::mac(*proto, key, &msg);
            msg.get_mut(range)
                .ok_or_else(|| ProbeError::Target("signing the request".into()))?
                .copy_from_slice(&mac);
            return Ok(msg);
        }
        Ok(v3::encode(i64::from(pdu.request_id), flags, &sec, &data))
    }
}

/// The name of an error-status (RFC 3416 §3).
fn error_name(status: i64) -> &'static str {
    match status {
        1 => "tooBig",
        2 => "noSuchName",
        3 => "badValue",
        4 => "readOnly",
        5 => "genErr",
        6 => "noAccess",
        16 => "authorizationError",
        _ => "other",
    }
}
