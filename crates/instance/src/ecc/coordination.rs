//! What several instance nodes sharing one database tell one another: which nodes are
//! alive, which node a MID's long-poll is attached to, who holds a named lease, and
//! the wake-ups a node announces after its writes commit ([`Announcement`]).
//!
//! The rows live in the database both backends share the schema of; the
//! announcements travel by PostgreSQL's `LISTEN/NOTIFY` (one node on SQLite has no
//! one to tell, and its store announces nothing).

/// One instance node, as it last said it was alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Random per process start.
    pub id: String,
    /// What an operator recognises: host name and listen address.
    pub name: String,
    /// When the node started (ms since the epoch).
    pub started_at: i64,
    /// When it last said it was alive.
    pub last_seen: i64,
}

/// Which node a MID's long-poll is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    /// MID name.
    pub mid_name: String,
    /// Node id.
    pub node: String,
    /// Since when.
    pub since: i64,
}

/// A wake-up one node gives the others, after the write it is about committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// New work is assigned to a MID (its long-poll should claim).
    Work {
        /// MID name.
        mid: String,
    },
    /// An output finished (callers waiting with `?wait` should read it).
    Finished {
        /// Output id.
        output: String,
    },
    /// An output has new streamed chunks.
    Progress {
        /// Output id.
        output: String,
    },
    /// A running job was cancelled: its MID's poll should say so.
    Cancel {
        /// MID name.
        mid: String,
        /// Output id.
        output: String,
        /// Attempt.
        attempt: u32,
    },
    /// A MID's long-poll is now attached to `node`.
    Present {
        /// MID name.
        mid: String,
        /// Node id.
        node: String,
    },
    /// Assignments should be re-checked (cluster, profile or status change).
    Rebalance,
}

/// Field separator of an encoded announcement: a byte no id or name may hold.
const SEP: char = '\u{1f}';

impl Announcement {
    /// The text sent as a notification's payload: the sending node, the kind, fields.
    pub fn encode(&self, from_node: &str) -> String {
        let mut out = String::with_capacity(64);
        out.push_str(from_node);
        let mut field = |f: &str| {
            out.push(SEP);
            out.push_str(f);
        };
        match self {
            Self::Work { mid } => {
                field("work");
                field(mid);
            }
            Self::Finished { output } => {
                field("finished");
                field(output);
            }
            Self::Progress { output } => {
                field("progress");
                field(output);
            }
            Self::Cancel {
                mid,
                output,
                attempt,
            } => {
                field("cancel");
                field(mid);
                field(output);
                field(&attempt.to_string());
            }
            Self::Present { mid, node } => {
                field("present");
                field(mid);
                field(node);
            }
            Self::Rebalance => field("rebalance"),
        }
        out
    }

    /// Reads a payload made by [`Announcement::encode`]: the sending node and what it
    /// said. `None` for anything else (another program's notification on the channel,
    /// a newer node's kind): ignored, never an error.
    pub fn decode(payload: &str) -> Option<(String, Self)> {
        let mut parts = payload.split(SEP);
        let node = parts.next()?.to_string();
        let kind = parts.next()?;
        let mut next = || parts.next().map(str::to_string);
        let announcement = match kind {
            "work" => Self::Work { mid: next()? },
            "finished" => Self::Finished { output: next()? },
            "progress" => Self::Progress { output: next()? },
            "cancel" => Self::Cancel {
                mid: next()?,
                output: next()?,
                attempt: next()?.parse().ok()?,
            },
            "present" => Self::Present {
                mid: next()?,
                node: next()?,
            },
            "rebalance" => Self::Rebalance,
            _ => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some((node, announcement))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._:-]{0,40}"
    }

    fn announcement() -> impl Strategy<Value = Announcement> {
        prop_oneof![
            field().prop_map(|mid| Announcement::Work { mid }),
            field().prop_map(|output| Announcement::Finished { output }),
            field().prop_map(|output| Announcement::Progress { output }),
            (field(), field(), any::<u32>()).prop_map(|(mid, output, attempt)| {
                Announcement::Cancel {
                    mid,
                    output,
                    attempt,
                }
            }),
            (field(), field()).prop_map(|(mid, node)| Announcement::Present { mid, node }),
            Just(Announcement::Rebalance),
        ]
    }

    proptest! {
        #[test]
        fn an_announcement_reads_back_as_it_was_sent(a in announcement(), node in field()) {
            prop_assert_eq!(Announcement::decode(&a.encode(&node)), Some((node, a)));
        }

        #[test]
        fn any_payload_is_read_without_a_panic(payload in ".{0,200}") {
            let _ = Announcement::decode(&payload);
        }
    }

    #[test]
    fn foreign_payloads_are_ignored() {
        assert_eq!(Announcement::decode("hello"), None);
        assert_eq!(Announcement::decode("n\u{1f}unknown\u{1f}x"), None);
        assert_eq!(
            Announcement::decode("n\u{1f}cancel\u{1f}m\u{1f}o\u{1f}x"),
            None
        );
        assert_eq!(Announcement::decode("n\u{1f}work\u{1f}m\u{1f}extra"), None);
    }
}
