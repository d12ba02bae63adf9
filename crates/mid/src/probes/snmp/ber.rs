//! A minimal BER codec for the SNMP messages this probe sends and reads (RFC 3416
//! PDUs in v1/v2c community messages and v3 USM messages, RFC 3412/3414). Written
//! here rather than taken from a crate so that it decodes without panicking on
//! anything an agent (or something pretending to be one) sends: every read is
//! bounds-checked, lengths are definite and at most four bytes, and nesting is the
//! fixed depth of an SNMP message — there is no recursion on input.

/// Why bytes are not an SNMP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SNMP message: {0}")]
pub struct DecodeError(pub &'static str);

type Result<T> = std::result::Result<T, DecodeError>;

/// Universal and SNMP application tags.
pub mod tag {
    /// INTEGER.
    pub const INTEGER: u8 = 0x02;
    /// OCTET STRING.
    pub const OCTET_STRING: u8 = 0x04;
    /// NULL.
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER.
    pub const OID: u8 = 0x06;
    /// SEQUENCE.
    pub const SEQUENCE: u8 = 0x30;
    /// IpAddress.
    pub const IP_ADDRESS: u8 = 0x40;
    /// Counter32.
    pub const COUNTER32: u8 = 0x41;
    /// Gauge32 / Unsigned32.
    pub const GAUGE32: u8 = 0x42;
    /// TimeTicks.
    pub const TIMETICKS: u8 = 0x43;
    /// Opaque.
    pub const OPAQUE: u8 = 0x44;
    /// Counter64.
    pub const COUNTER64: u8 = 0x46;
    /// noSuchObject.
    pub const NO_SUCH_OBJECT: u8 = 0x80;
    /// noSuchInstance.
    pub const NO_SUCH_INSTANCE: u8 = 0x81;
    /// endOfMibView.
    pub const END_OF_MIB_VIEW: u8 = 0x82;
    /// GetRequest-PDU.
    pub const GET: u8 = 0xa0;
    /// GetNextRequest-PDU.
    pub const GET_NEXT: u8 = 0xa1;
    /// Response-PDU.
    pub const RESPONSE: u8 = 0xa2;
    /// GetBulkRequest-PDU.
    pub const GET_BULK: u8 = 0xa5;
    /// Report-PDU.
    pub const REPORT: u8 = 0xa8;
}

/// A varbind's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// INTEGER (Integer32).
    Integer(i64),
    /// OCTET STRING.
    OctetString(Vec<u8>),
    /// NULL (what requests carry).
    Null,
    /// OBJECT IDENTIFIER.
    Oid(Vec<u32>),
    /// IpAddress.
    IpAddress([u8; 4]),
    /// Counter32.
    Counter32(u32),
    /// Gauge32.
    Gauge32(u32),
    /// TimeTicks (hundredths of a second).
    TimeTicks(u32),
    /// Opaque.
    Opaque(Vec<u8>),
    /// Counter64.
    Counter64(u64),
    /// The agent has no such object.
    NoSuchObject,
    /// …no such instance.
    NoSuchInstance,
    /// Nothing follows in the MIB.
    EndOfMibView,
}

/// One PDU. For get-bulk, `error_status` is non-repeaters and `error_index`
/// max-repetitions (RFC 3416 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// Its tag ([`tag::GET`] …).
    pub kind: u8,
    /// Matches a response to its request.
    pub request_id: i32,
    /// 0 for no error.
    pub error_status: i64,
    /// Which varbind (from 1) the error is about.
    pub error_index: i64,
    /// The varbinds.
    pub varbinds: Vec<(Vec<u32>, Value)>,
}

// ---- encoding ----

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Writes one TLV.
pub fn tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    push_len(out, content.len());
    out.extend_from_slice(content);
}

fn int_bytes(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

fn uint_bytes(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut out = Vec::with_capacity(9);
    if bytes[skip] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// Writes an INTEGER.
pub fn integer(out: &mut Vec<u8>, v: i64) {
    tlv(out, tag::INTEGER, &int_bytes(v));
}

/// Writes an OCTET STRING.
pub fn octets(out: &mut Vec<u8>, v: &[u8]) {
    tlv(out, tag::OCTET_STRING, v);
}

fn oid_bytes(oid: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(oid.len() + 2);
    let (first, rest) = match oid {
        [a, b, rest @ ..] => (u64::from(*a) * 40 + u64::from(*b), rest),
        [a] => (u64::from(*a) * 40, &[][..]),
        [] => (0, &[][..]),
    };
    push_base128(&mut out, first);
    for n in rest {
        push_base128(&mut out, u64::from(*n));
    }
    out
}

fn push_base128(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (n & 0x7f) as u8 | if i == tmp.len() - 1 { 0 } else { 0x80 };
        n >>= 7;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Writes a value.
pub fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Integer(n) => integer(out, *n),
        Value::OctetString(b) => octets(out, b),
        Value::Null => tlv(out, tag::NULL, &[]),
        Value::Oid(o) => tlv(out, tag::OID, &oid_bytes(o)),
        Value::IpAddress(a) => tlv(out, tag::IP_ADDRESS, a),
        Value::Counter32(n) => tlv(out, tag::COUNTER32, &uint_bytes(u64::from(*n))),
        Value::Gauge32(n) => tlv(out, tag::GAUGE32, &uint_bytes(u64::from(*n))),
        Value::TimeTicks(n) => tlv(out, tag::TIMETICKS, &uint_bytes(u64::from(*n))),
        Value::Opaque(b) => tlv(out, tag::OPAQUE, b),
        Value::Counter64(n) => tlv(out, tag::COUNTER64, &uint_bytes(*n)),
        Value::NoSuchObject => tlv(out, tag::NO_SUCH_OBJECT, &[]),
        Value::NoSuchInstance => tlv(out, tag::NO_SUCH_INSTANCE, &[]),
        Value::EndOfMibView => tlv(out, tag::END_OF_MIB_VIEW, &[]),
    }
}

/// Encodes a PDU.
pub fn pdu(p: &Pdu) -> Vec<u8> {
    let mut list = Vec::new();
    for (oid, v) in &p.varbinds {
        let mut vb = Vec::new();
        tlv(&mut vb, tag::OID, &oid_bytes(oid));
        value(&mut vb, v);
        tlv(&mut list, tag::SEQUENCE, &vb);
    }
    let mut body = Vec::new();
    integer(&mut body, i64::from(p.request_id));
    integer(&mut body, p.error_status);
    integer(&mut body, p.error_index);
    tlv(&mut body, tag::SEQUENCE, &list);
    let mut out = Vec::new();
    tlv(&mut out, p.kind, &body);
    out
}

/// A v1 (`version` 0) or v2c (1) community message.
pub fn community_message(version: i64, community: &[u8], p: &Pdu) -> Vec<u8> {
    let mut body = Vec::new();
    integer(&mut body, version);
    octets(&mut body, community);
    body.extend_from_slice(&pdu(p));
    let mut out = Vec::new();
    tlv(&mut out, tag::SEQUENCE, &body);
    out
}

// ---- decoding ----

/// Reads TLVs from a byte slice, never past its end.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// What is left unread.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Where the reader is in its slice.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    /// The next TLV: its tag and content.
    pub fn any(&mut self) -> Result<(u8, &'a [u8])> {
        let tag = self.byte()?;
        if tag & 0x1f == 0x1f {
            return Err(DecodeError("multi-byte tags are not SNMP"));
        }
        let first = self.byte()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(DecodeError("unsupported length form"));
            }
            let mut len = 0usize;
            for _ in 0..n {
                len = (len << 8) | usize::from(self.byte()?);
            }
            len
        };
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or(DecodeError("a length runs past the end"))?;
        let content = &self.buf[self.pos..end];
        self.pos = end;
        Ok((tag, content))
    }

    /// The next TLV, which must have tag `want`.
    pub fn expect(&mut self, want: u8, what: &'static str) -> Result<&'a [u8]> {
        let (tag, content) = self.any()?;
        if tag != want {
            return Err(DecodeError(what));
        }
        Ok(content)
    }

    /// A SEQUENCE's content as a reader.
    pub fn sequence(&mut self, what: &'static str) -> Result<Reader<'a>> {
        self.expect(tag::SEQUENCE, what).map(Reader::new)
    }

    /// An INTEGER.
    pub fn integer(&mut self, what: &'static str) -> Result<i64> {
        read_int(self.expect(tag::INTEGER, what)?)
    }

    /// An OCTET STRING.
    pub fn octets(&mut self, what: &'static str) -> Result<&'a [u8]> {
        self.expect(tag::OCTET_STRING, what)
    }
}

fn read_int(c: &[u8]) -> Result<i64> {
    if c.is_empty() || c.len() > 8 {
        return Err(DecodeError("an INTEGER has a bad length"));
    }
    let mut v: i64 = if c[0] & 0x80 != 0 { -1 } else { 0 };
    for b in c {
        v = (v << 8) | i64::from(*b);
    }
    Ok(v)
}

fn read_uint(c: &[u8], max_bytes: usize) -> Result<u64> {
    let c = match c {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => c,
    };
    if c.is_empty() || c.len() > max_bytes {
        return Err(DecodeError("an unsigned number has a bad length"));
    }
    Ok(c.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)))
}

fn read_u32(c: &[u8]) -> Result<u32> {
    // Some agents write a Counter32 with its top bit set as a negative INTEGER
    // would be: take the low 32 bits either way.
    let v = read_uint(c, 5)?;
    u32::try_from(v & 0xffff_ffff).map_err(|_| DecodeError("unreachable"))
}

fn read_oid(c: &[u8]) -> Result<Vec<u32>> {
    if c.is_empty() {
        return Err(DecodeError("an empty OID"));
    }
    let mut out = Vec::new();
    let mut n: u64 = 0;
    let mut in_arc = false;
    for b in c {
        if !in_arc && *b == 0x80 {
            return Err(DecodeError("an OID arc has a leading zero byte"));
        }
        n = (n << 7) | u64::from(b & 0x7f);
        if n > u64::from(u32::MAX) * 40 + 39 {
            return Err(DecodeError("an OID arc is too large"));
        }
        if b & 0x80 != 0 {
            in_arc = true;
            continue;
        }
        in_arc = false;
        if out.is_empty() {
            let first = (n / 40).min(2);
            let second = n - first * 40;
            out.push(first as u32);
            out.push(u32::try_from(second).map_err(|_| DecodeError("an OID arc is too large"))?);
        } else {
            out.push(u32::try_from(n).map_err(|_| DecodeError("an OID arc is too large"))?);
        }
        if out.len() > openmid_proto::snmp::MAX_OID_LEN {
            return Err(DecodeError("an OID is too long"));
        }
        n = 0;
    }
    if in_arc {
        return Err(DecodeError("an OID ends inside an arc"));
    }
    Ok(out)
}

fn read_value(tag: u8, c: &[u8]) -> Result<Value> {
    Ok(match tag {
        tag::INTEGER => Value::Integer(read_int(c)?),
        tag::OCTET_STRING => Value::OctetString(c.to_vec()),
        tag::NULL => Value::Null,
        tag::OID => Value::Oid(read_oid(c)?),
        tag::IP_ADDRESS => Value::IpAddress(
            c.try_into()
                .map_err(|_| DecodeError("an IpAddress is not 4 bytes"))?,
        ),
        tag::COUNTER32 => Value::Counter32(read_u32(c)?),
        tag::GAUGE32 => Value::Gauge32(read_u32(c)?),
        tag::TIMETICKS => Value::TimeTicks(read_u32(c)?),
        tag::OPAQUE => Value::Opaque(c.to_vec()),
        tag::COUNTER64 => Value::Counter64(read_uint(c, 8)?),
        tag::NO_SUCH_OBJECT => Value::NoSuchObject,
        tag::NO_SUCH_INSTANCE => Value::NoSuchInstance,
        tag::END_OF_MIB_VIEW => Value::EndOfMibView,
        _ => return Err(DecodeError("a value of an unknown type")),
    })
}

/// Decodes a PDU (the whole of `buf`).
pub fn read_pdu(buf: &[u8]) -> Result<Pdu> {
    let mut r = Reader::new(buf);
    let (kind, content) = r.any()?;
    if !matches!(
        kind,
        tag::GET | tag::GET_NEXT | tag::RESPONSE | tag::GET_BULK | tag::REPORT
    ) {
        return Err(DecodeError("not a PDU this probe knows"));
    }
    let mut body = Reader::new(content);
    let request_id = i32::try_from(body.integer("request-id")?)
        .map_err(|_| DecodeError("request-id out of range"))?;
    let error_status = body.integer("error-status")?;
    let error_index = body.integer("error-index")?;
    let mut list = body.sequence("varbind list")?;
    let mut varbinds = Vec::new();
    while !list.is_empty() {
        let mut vb = list.sequence("varbind")?;
        let oid = read_oid(vb.expect(tag::OID, "varbind name")?)?;
        let (t, c) = vb.any()?;
        varbinds.push((oid, read_value(t, c)?));
    }
    Ok(Pdu {
        kind,
        request_id,
        error_status,
        error_index,
        varbinds,
    })
}

/// A community message: its version, community and PDU.
pub fn read_community_message(buf: &[u8]) -> Result<(i64, Vec<u8>, Pdu)> {
    let mut outer = Reader::new(buf);
    let mut m = outer.sequence("message")?;
    let version = m.integer("version")?;
    let community = m.octets("community")?.to_vec();
    let rest = m.rest();
    Ok((version, community, read_pdu(rest)?))
}
