//! Walks of a subtree with get-next (any version) or get-bulk (v2c, v3). A walk ends
//! at the end of the subtree, at endOfMibView (or v1's noSuchName), at an OID that
//! does not increase — an agent looping would otherwise keep the job busy until its
//! deadline — or at `max_varbinds`, then marked truncated.

use super::ber::{Value, tag};
use super::session::Session;
use crate::probes::ProbeError;
use openmid_proto::snmp::oid_text;

/// What a walk read.
pub struct Walked {
    /// The varbinds under the root, in order.
    pub varbinds: Vec<(Vec<u32>, Value)>,
    /// It stopped at `max` with more to read.
    pub truncated: bool,
}

/// Walks everything under `root`; `bulk` is max-repetitions for get-bulk.
pub async fn walk(
    session: &mut Session,
    root: &[u32],
    bulk: Option<u32>,
    max: u64,
) -> Result<Walked, ProbeError> {
    let mut out: Vec<(Vec<u32>, Value)> = Vec::new();
    let mut cur = root.to_vec();
    loop {
        let pdu = match bulk {
            Some(reps) => {
                session
                    .request(tag::GET_BULK, &[cur.clone()], (0, i64::from(reps)))
                    .await?
            }
            None => {
                session
                    .request(tag::GET_NEXT, &[cur.clone()], (0, 0))
                    .await?
            }
        };
        if pdu.error_status != 0 || pdu.varbinds.is_empty() {
            // v1's noSuchName: nothing follows.
            return Ok(Walked {
                varbinds: out,
                truncated: false,
            });
        }
        for (oid, value) in pdu.varbinds {
            if value == Value::EndOfMibView || !oid.starts_with(root) {
                return Ok(Walked {
                    varbinds: out,
                    truncated: false,
                });
            }
            if oid <= cur {
                tracing::warn!(after = %oid_text(&cur), got = %oid_text(&oid), "the SNMP agent returned an OID that does not increase: the walk stops here");
                return Ok(Walked {
                    varbinds: out,
                    truncated: false,
                });
            }
            if out.len() as u64 >= max {
                return Ok(Walked {
                    varbinds: out,
                    truncated: true,
                });
            }
            cur.clone_from(&oid);
            out.push((oid, value));
        }
    }
}
