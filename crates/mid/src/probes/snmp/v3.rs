//! The SNMPv3 message (RFC 3412 §6) with USM security parameters (RFC 3414 §2.4):
//! encoding, decoding and where the authentication parameters sit, so the HMAC can
//! be computed over the message with them zeroed and written in place.

use super::ber::{self, DecodeError, Pdu, Reader, tag};
use std::ops::Range;

/// `msgFlags` bits.
pub const AUTH: u8 = 0x01;
/// Privacy.
pub const PRIV: u8 = 0x02;
/// A report is wanted on error.
pub const REPORTABLE: u8 = 0x04;
/// The largest message we take.
pub const MAX_SIZE: i64 = 65_507;

/// USM security parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecParams {
    /// The authoritative (agent's) engine id.
    pub engine_id: Vec<u8>,
    /// Its boots.
    pub boots: i64,
    /// Its time, seconds.
    pub time: i64,
    /// The user.
    pub user: Vec<u8>,
    /// The MAC (zeros while it is computed).
    pub auth: Vec<u8>,
    /// The privacy salt.
    pub privacy: Vec<u8>,
}

/// A message's scoped PDU, in the clear or encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// The scoped PDU's encoding (a SEQUENCE).
    Plain(Vec<u8>),
    /// Its encryption.
    Encrypted(Vec<u8>),
}

/// A decoded message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Its id.
    pub msg_id: i64,
    /// Its flags.
    pub flags: u8,
    /// The security parameters.
    pub sec: SecParams,
    /// The scoped PDU.
    pub data: Data,
    /// Where `sec.auth`'s bytes are in the message.
    pub auth_range: Range<usize>,
}

/// A scoped PDU: context engine id, context name, PDU.
pub fn scoped_pdu(context_engine: &[u8], context_name: &[u8], pdu: &Pdu) -> Vec<u8> {
    let mut body = Vec::new();
    ber::octets(&mut body, context_engine);
    ber::octets(&mut body, context_name);
    body.extend_from_slice(&ber::pdu(pdu));
    let mut out = Vec::new();
    ber::tlv(&mut out, tag::SEQUENCE, &body);
    out
}

/// Reads a scoped PDU (trailing bytes, such as cipher padding, are ignored).
pub fn read_scoped(buf: &[u8]) -> Result<Pdu, DecodeError> {
    let mut r = Reader::new(buf).sequence("scoped PDU")?;
    let _engine = r.octets("contextEngineID")?;
    let _name = r.octets("contextName")?;
    let rest = r.rest();
    let mut one = Reader::new(rest);
    let (_, _) = one.any()?;
    ber::read_pdu(rest.get(..one.position()).unwrap_or_default())
}

/// Encodes a message; its authentication parameters are as `sec` holds them.
pub fn encode(msg_id: i64, flags: u8, sec: &SecParams, data: &Data) -> Vec<u8> {
    let mut header = Vec::new();
    ber::integer(&mut header, msg_id);
    ber::integer(&mut header, MAX_SIZE);
    ber::octets(&mut header, &[flags]);
    ber::integer(&mut header, 3);
    let mut usm = Vec::new();
    ber::octets(&mut usm, &sec.engine_id);
    ber::integer(&mut usm, sec.boots);
    ber::integer(&mut usm, sec.time);
    ber::octets(&mut usm, &sec.user);
    ber::octets(&mut usm, &sec.auth);
    ber::octets(&mut usm, &sec.privacy);
    let mut usm_seq = Vec::new();
    ber::tlv(&mut usm_seq, tag::SEQUENCE, &usm);
    let mut body = Vec::new();
    ber::integer(&mut body, 3);
    ber::tlv(&mut body, tag::SEQUENCE, &header);
    ber::octets(&mut body, &usm_seq);
    match data {
        Data::Plain(scoped) => body.extend_from_slice(scoped),
        Data::Encrypted(bytes) => ber::octets(&mut body, bytes),
    }
    let mut out = Vec::new();
    ber::tlv(&mut out, tag::SEQUENCE, &body);
    out
}

/// Where `part` (a sub-slice of `whole`) lies in it.
fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

/// Decodes a v3 message.
pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
    let mut m = Reader::new(buf).sequence("message")?;
    if m.integer("version")? != 3 {
        return Err(DecodeError("not an SNMPv3 message"));
    }
    let mut h = m.sequence("header")?;
    let msg_id = h.integer("msgID")?;
    let _max = h.integer("msgMaxSize")?;
    let flags = *h
        .octets("msgFlags")?
        .first()
        .ok_or(DecodeError("empty msgFlags"))?;
    if h.integer("msgSecurityModel")? != 3 {
        return Err(DecodeError("not the USM security model"));
    }
    let mut s = Reader::new(m.octets("msgSecurityParameters")?).sequence("USM parameters")?;
    let engine_id = s.octets("engine id")?.to_vec();
    let boots = s.integer("engine boots")?;
    let time = s.integer("engine time")?;
    let user = s.octets("user name")?.to_vec();
    let auth_bytes = s.octets("authentication parameters")?;
    let privacy = s.octets("privacy parameters")?.to_vec();
    let (t, content) = m.any()?;
    let data = match t {
        tag::SEQUENCE => {
            let mut whole = Vec::new();
            ber::tlv(&mut whole, tag::SEQUENCE, content);
            Data::Plain(whole)
        }
        tag::OCTET_STRING => Data::Encrypted(content.to_vec()),
        _ => return Err(DecodeError("bad scoped PDU")),
    };
    Ok(Message {
        msg_id,
        flags,
        sec: SecParams {
            engine_id,
            boots,
            time,
            user,
            auth: auth_bytes.to_vec(),
            privacy,
        },
        data,
        auth_range: range_in(buf, auth_bytes),
    })
}
