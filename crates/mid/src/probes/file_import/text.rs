//! Bytes to text in the request's encoding. UTF-8 is checked, not replaced: a field
//! with invalid bytes makes its record a row error rather than a silently altered
//! value. The single-byte encodings map every byte, so they never fail.

use std::io::Read;

/// The text encoding of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8 (and its subset US-ASCII).
    Utf8,
    /// windows-1252 (what `latin1` means on the web, a superset of ISO-8859-1's
    /// printable characters).
    Windows1252,
}

impl TextEncoding {
    /// The encoding a (validated) request label names; UTF-8 by default.
    pub fn of_label(label: Option<&str>) -> Self {
        match label.map(str::to_ascii_lowercase).as_deref() {
            None | Some("utf-8" | "utf8" | "us-ascii") => Self::Utf8,
            Some(_) => Self::Windows1252,
        }
    }

    /// The bytes as text, or why they are not text in this encoding.
    pub fn decode(self, bytes: &[u8]) -> Result<String, String> {
        match self {
            Self::Utf8 => match std::str::from_utf8(bytes) {
                Ok(s) => Ok(s.to_string()),
                Err(e) => Err(format!(
                    "invalid UTF-8 at byte {} of the value",
                    e.valid_up_to()
                )),
            },
            Self::Windows1252 => {
                let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
                Ok(text.into_owned())
            }
        }
    }
}

/// A reader that turns a single-byte encoding into UTF-8 as it reads, for formats
/// read as one document (XML, JSON), which re-runs skip by record count, not offset.
pub struct Utf8Reader<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    input: Vec<u8>,
    output: Vec<u8>,
    start: usize,
    done: bool,
}

impl<R: Read> Utf8Reader<R> {
    /// Decodes `inner` from windows-1252.
    pub fn windows_1252(inner: R) -> Self {
        Self {
            inner,
            decoder: encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling(),
            input: vec![0; 16 * 1024],
            output: Vec::new(),
            start: 0,
            done: false,
        }
    }
}

impl<R: Read> Read for Utf8Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.start >= self.output.len() {
            if self.done {
                return Ok(0);
            }
            let n = self.inner.read(&mut self.input)?;
            let last = n == 0;
            // windows-1252 grows at most three times (every byte one BMP character).
            let mut out = String::with_capacity(n * 3 + 16);
            let (_, _, _) = self
                .decoder
                .decode_to_string(&self.input[..n], &mut out, last);
            self.output = out.into_bytes();
            self.start = 0;
            self.done = last;
        }
        let n = buf.len().min(self.output.len() - self.start);
        buf[..n].copy_from_slice(&self.output[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_checks() {
        assert_eq!(TextEncoding::Utf8.decode("é".as_bytes()), Ok("é".into()));
        assert!(TextEncoding::Utf8.decode(&[0x61, 0xe9]).is_err());
        assert_eq!(
            TextEncoding::Windows1252.decode(&[0xe9, 0x80]),
            Ok("é€".into())
        );
        let mut out = String::new();
        Utf8Reader::windows_1252(&[b'a', 0xe9][..])
            .read_to_string(&mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, "aé");
    }
}
