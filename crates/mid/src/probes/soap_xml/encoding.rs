//! Turning response bytes into text: quick-xml reads UTF-8 only, so the other
//! encodings SOAP services realistically send are converted first.

use super::SoapXmlError;
use std::borrow::Cow;

/// Turns the response bytes into text. quick-xml reads UTF-8 only; the other encodings
/// SOAP services realistically send are converted here.
pub(super) fn decode_input(xml: &[u8]) -> Result<Cow<'_, str>, SoapXmlError> {
    if let Some(rest) = xml.strip_prefix(b"\xEF\xBB\xBF") {
        return utf8(rest);
    }
    if let Some(rest) = xml.strip_prefix(b"\xFF\xFE") {
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = xml.strip_prefix(b"\xFE\xFF") {
        return utf16(rest, u16::from_be_bytes);
    }
    match utf8(xml) {
        Err(_) if declares_latin1(xml) => {
            Ok(Cow::Owned(xml.iter().map(|&b| char::from(b)).collect()))
        }
        other => other,
    }
}

fn utf8(bytes: &[u8]) -> Result<Cow<'_, str>, SoapXmlError> {
    std::str::from_utf8(bytes).map(Cow::Borrowed).map_err(|e| {
        SoapXmlError::Malformed(format!(
            "the response is not valid UTF-8 (at byte {}); only UTF-8, UTF-16 with a byte-order mark and ISO-8859-1 are read",
            e.valid_up_to()
        ))
    })
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<Cow<'static, str>, SoapXmlError> {
    let bad = || SoapXmlError::Malformed("the response is not valid UTF-16".into());
    if !bytes.len().is_multiple_of(2) {
        return Err(bad());
    }
    let units = bytes.chunks_exact(2).map(|pair| unit([pair[0], pair[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map(Cow::Owned)
        .map_err(|_| bad())
}

/// Whether the XML declaration names ISO-8859-1. Only the declaration is looked at,
/// and it is ASCII whatever the encoding.
fn declares_latin1(xml: &[u8]) -> bool {
    let head = xml.get(..xml.len().min(256)).unwrap_or_default();
    if !head.starts_with(b"<?xml") {
        return false;
    }
    let Some(end) = head.windows(2).position(|w| w == b"?>") else {
        return false;
    };
    let declaration =
        String::from_utf8_lossy(head.get(..end).unwrap_or_default()).to_ascii_lowercase();
    ["iso-8859-1", "iso_8859-1", "latin1", "latin-1"]
        .iter()
        .any(|name| declaration.contains(name))
}
