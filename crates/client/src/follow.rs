//! Reading `GET /api/v1/actions/{id}/output` line by line as it arrives: the client
//! side of following a command's output ([`ApiClient::follow_output`]).
//!
//! [`ApiClient::follow_output`]: crate::ApiClient::follow_output

use crate::ClientError;
use openmid_proto::command_output::OutputLine;

/// Longest line accepted (a 64 KiB chunk of control characters is about 400 KiB of
/// JSON); a longer one means the answer is not what it should be.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// The lines of one output route answer, parsed as they come.
pub struct OutputFollower {
    resp: reqwest::Response,
    url: String,
    buf: Vec<u8>,
    done: bool,
}

impl OutputFollower {
    pub(crate) fn new(resp: reqwest::Response, url: String) -> Self {
        Self {
            resp,
            url,
            buf: Vec::new(),
            done: false,
        }
    }

    /// The next line; `None` once the answer ended.
    pub async fn next(&mut self) -> Result<Option<OutputLine>, ClientError> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let line = &line[..end];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| self.unexpected(format!("an output line is not valid: {e}")));
            }
            if self.done {
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                return Err(self.unexpected("the answer ended inside a line".into()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(self.unexpected(format!("a line longer than {MAX_LINE} bytes")));
            }
            match self.resp.chunk().await {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) => self.done = true,
                Err(source) => {
                    return Err(ClientError::Transport {
                        url: self.url.clone(),
                        source: source.without_url(),
                    });
                }
            }
        }
    }

    fn unexpected(&self, detail: String) -> ClientError {
        ClientError::Unexpected {
            url: self.url.clone(),
            detail,
        }
    }
}
