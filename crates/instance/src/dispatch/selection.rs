//! Which MID runs an output: the agent's own MID, a cluster member, or for `mid.auto`
//! the best MID by status → application → IP range → capability → load. Every choice
//! comes with a sentence saying why, kept on the record.

use crate::ecc::{ClusterRow, Load, MidRow};
use openmid_proto::api::ClusterKind;
use openmid_proto::ecc::Topic;
use openmid_proto::iprange::IpRanges;
use openmid_proto::mid::MidStatus;
use std::collections::HashMap;
use std::net::IpAddr;

/// What the output needs.
#[derive(Debug, Clone, Default)]
pub struct Needs<'a> {
    /// Capability of its topic.
    pub capability: &'a str,
    /// Its application, if any.
    pub application: Option<&'a str>,
    /// Its target's IP address, when the payload names one.
    pub target_ip: Option<IpAddr>,
    /// A MID to avoid when another is eligible (the one whose lease lapsed).
    pub avoid: Option<&'a str>,
    /// Further capabilities the MID must offer (an alias's execution settings).
    pub more_capabilities: Vec<String>,
    /// The topic: only a MID with a probe for it can run the output.
    pub topic: Option<Topic>,
}

/// The choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// This MID, because …
    Mid {
        /// MID name.
        name: String,
        /// Why.
        why: String,
        /// Chosen by rank (failover): waiting work should follow a better-ranked member
        /// when it returns, rather than stay where it is.
        by_rank: bool,
    },
    /// Nobody now, because …
    Nobody {
        /// Why.
        why: String,
    },
}

fn offers(list: &[String], wanted: &str) -> bool {
    list.is_empty()
        || list
            .iter()
            .any(|c| c.eq_ignore_ascii_case(wanted) || c.eq_ignore_ascii_case("ALL"))
}

/// How busy a MID is: outputs it has per worker slot it reported.
fn busyness(mid: &MidRow, load: &HashMap<String, Load>) -> (f64, u64) {
    let have = load.get(&mid.name).copied().unwrap_or_default().total();
    let slots = mid
        .health
        .as_ref()
        .map(|h| h.pool_sizes.total())
        .filter(|s| *s > 0)
        .unwrap_or(1);
    (have as f64 / f64::from(slots), have)
}

/// The least busy of `candidates` (ties: first in order), skipping `avoid` when
/// another exists.
fn least_busy<'a>(
    candidates: &[&'a MidRow],
    load: &HashMap<String, Load>,
    avoid: Option<&str>,
) -> Option<(&'a MidRow, u64)> {
    let pool: Vec<&&MidRow> = if candidates.len() > 1 {
        candidates
            .iter()
            .filter(|m| Some(m.name.as_str()) != avoid)
            .collect()
    } else {
        candidates.iter().collect()
    };
    let mut best: Option<(&MidRow, f64, u64)> = None;
    for mid in pool {
        let (score, have) = busyness(mid, load);
        if best.is_none_or(|(_, s, _)| score < s) {
            best = Some((mid, score, have));
        }
    }
    best.map(|(m, _, have)| (m, have))
}

/// Picks a member of `cluster`.
pub fn in_cluster(
    cluster: &ClusterRow,
    mids: &[MidRow],
    load: &HashMap<String, Load>,
    avoid: Option<&str>,
) -> Choice {
    let by_name: HashMap<&str, &MidRow> = mids.iter().map(|m| (m.name.as_str(), m)).collect();
    let members: Vec<(&String, Option<&&MidRow>)> = cluster
        .members
        .iter()
        .map(|n| (n, by_name.get(n.as_str())))
        .collect();
    let up: Vec<&MidRow> = members
        .iter()
        .filter_map(|(_, m)| m.copied())
        .filter(|m| m.status == MidStatus::Up)
        .collect();
    if up.is_empty() {
        let states: Vec<String> = members
            .iter()
            .map(|(n, m)| format!("{n}: {}", m.map_or("not enrolled", |m| m.status.as_str())))
            .collect();
        return Choice::Nobody {
            why: format!(
                "no member of cluster {} is up ({}); waiting for one",
                cluster.name,
                if states.is_empty() {
                    "no members".to_string()
                } else {
                    states.join(", ")
                }
            ),
        };
    }
    match cluster.kind {
        ClusterKind::Failover => {
            let pick = up
                .iter()
                .find(|m| Some(m.name.as_str()) != avoid)
                .or(up.first())
                .copied();
            match pick {
                Some(m) => {
                    let rank = cluster
                        .members
                        .iter()
                        .position(|n| *n == m.name)
                        .map_or(0, |i| i + 1);
                    Choice::Mid {
                        name: m.name.clone(),
                        why: format!(
                            "failover cluster {}: {} is the first up member (rank {rank} of {})",
                            cluster.name,
                            m.name,
                            cluster.members.len()
                        ),
                        by_rank: true,
                    }
                }
                None => Choice::Nobody {
                    why: format!("no member of cluster {} is up", cluster.name),
                },
            }
        }
        ClusterKind::LoadBalance => match least_busy(&up, load, avoid) {
            Some((m, have)) => Choice::Mid {
                name: m.name.clone(),
                why: format!(
                    "load-balance cluster {}: {} is the least loaded of {} up members ({have} outputs)",
                    cluster.name,
                    m.name,
                    up.len()
                ),
                by_rank: false,
            },
            None => Choice::Nobody {
                why: format!("no member of cluster {} is up", cluster.name),
            },
        },
    }
}

/// Picks any MID for `mid.auto`.
pub fn auto(needs: &Needs<'_>, mids: &[MidRow], load: &HashMap<String, Load>) -> Choice {
    let mut steps = Vec::new();
    let up: Vec<&MidRow> = mids.iter().filter(|m| m.status == MidStatus::Up).collect();
    steps.push(format!("{} up", up.len()));
    let mut pool = up;
    if let Some(app) = needs.application {
        pool.retain(|m| offers(&m.profile().applications, app));
        steps.push(format!("{} serve application {app}", pool.len()));
    }
    if let Some(ip) = needs.target_ip {
        pool.retain(|m| {
            IpRanges::parse(&m.profile().ip_ranges)
                .map(|r| r.serves(ip))
                .unwrap_or(false)
        });
        steps.push(format!("{} cover {ip}", pool.len()));
    }
    if let Some(topic) = needs.topic {
        pool.retain(|m| m.profile().runs(topic));
        steps.push(format!("{} have a {topic} probe", pool.len()));
    }
    pool.retain(|m| offers(&m.profile().capabilities, needs.capability));
    for extra in &needs.more_capabilities {
        pool.retain(|m| offers(&m.profile().capabilities, extra));
        steps.push(format!("{} have capability {extra}", pool.len()));
    }
    steps.push(format!(
        "{} have capability {}",
        pool.len(),
        needs.capability
    ));
    match least_busy(&pool, load, needs.avoid) {
        Some((m, have)) => Choice::Mid {
            name: m.name.clone(),
            why: format!(
                "mid.auto: {} → {} (least loaded, {have} outputs)",
                steps.join(", "),
                m.name
            ),
            by_rank: false,
        },
        None => Choice::Nobody {
            why: format!("mid.auto found no MID: {}", steps.join(", ")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::api::{MidHealth, ProfileUpdate};
    use openmid_proto::mid::{Capacity, MidProfile};

    fn mid(name: &str, status: MidStatus, profile: MidProfile) -> MidRow {
        MidRow {
            id: name.into(),
            name: name.into(),
            secret_hash: String::new(),
            public_key: String::new(),
            status,
            status_reason: None,
            version: "t".into(),
            hostname: "h".into(),
            protocol_version: 1,
            enrolled_at: 0,
            validated_at: None,
            last_seen_at: None,
            declared_profile: profile,
            admin_profile: None,
            health: Some(MidHealth {
                pool_sizes: Capacity {
                    interactive: 10,
                    expedited: 0,
                    standard: 0,
                },
                ..Default::default()
            }),
            rekey_requested: false,
        }
    }

    fn load(pairs: &[(&str, u64)]) -> HashMap<String, Load> {
        pairs
            .iter()
            .map(|(n, r)| {
                (
                    n.to_string(),
                    Load {
                        ready: *r,
                        processing: 0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn failover_takes_the_first_up_member_and_load_balance_the_least_loaded() {
        let mids = vec![
            mid("a", MidStatus::Down, MidProfile::default()),
            mid("b", MidStatus::Up, MidProfile::default()),
            mid("c", MidStatus::Up, MidProfile::default()),
        ];
        let fo = ClusterRow {
            name: "f".into(),
            kind: ClusterKind::Failover,
            members: vec!["a".into(), "b".into(), "c".into()],
        };
        let l = load(&[("b", 9), ("c", 1)]);
        assert!(
            matches!(in_cluster(&fo, &mids, &l, None), Choice::Mid { name, .. } if name == "b")
        );
        assert!(
            matches!(in_cluster(&fo, &mids, &l, Some("b")), Choice::Mid { name, .. } if name == "c")
        );
        let lb = ClusterRow {
            kind: ClusterKind::LoadBalance,
            ..fo.clone()
        };
        assert!(
            matches!(in_cluster(&lb, &mids, &l, None), Choice::Mid { name, .. } if name == "c")
        );
        let all_down = vec![mid("a", MidStatus::Down, MidProfile::default())];
        let Choice::Nobody { why } = in_cluster(&fo, &all_down, &l, None) else {
            panic!("nobody")
        };
        assert!(
            why.contains("a: down") && why.contains("b: not enrolled"),
            "{why}"
        );
    }

    #[test]
    fn auto_filters_by_application_range_and_capability() {
        let profile = |caps: &[&str], apps: &[&str], ranges: &[&str]| MidProfile {
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            applications: apps.iter().map(|s| s.to_string()).collect(),
            ip_ranges: ranges.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let mut admin = mid(
            "x",
            MidStatus::Up,
            profile(&["REST"], &["Discovery"], &["10.0.0.0/8"]),
        );
        admin.admin_profile = Some(ProfileUpdate {
            capabilities: Some(vec!["SSH".into()]),
            ..Default::default()
        });
        let mids = vec![
            mid(
                "dc1",
                MidStatus::Up,
                profile(&["REST", "SSH"], &["Discovery"], &["10.0.0.0/8"]),
            ),
            mid(
                "dc2",
                MidStatus::Up,
                profile(&["ALL"], &["Orchestration"], &["10.0.0.0/8"]),
            ),
            mid(
                "dmz",
                MidStatus::Up,
                profile(&["REST"], &[], &["192.168.0.0/16"]),
            ),
            admin,
        ];
        let needs = Needs {
            capability: "REST",
            application: Some("Discovery"),
            target_ip: "10.1.1.1".parse().ok(),
            avoid: None,
            more_capabilities: Vec::new(),
            topic: Some(Topic::RESTProbe),
        };
        let Choice::Mid { name, why, .. } = auto(&needs, &mids, &HashMap::new()) else {
            panic!("a MID")
        };
        assert_eq!(name, "dc1", "{why}");
        assert!(why.contains("capability REST"), "{why}");
        // These MIDs say nothing of their topics (older builds): REST and SOAP only.
        let command = Needs {
            capability: "Command",
            topic: Some(Topic::Command),
            ..needs.clone()
        };
        let Choice::Nobody { why } = auto(&command, &mids, &HashMap::new()) else {
            panic!("no MID has a Command probe")
        };
        assert!(why.contains("0 have a Command probe"), "{why}");
        let needs = Needs {
            target_ip: "172.16.0.1".parse().ok(),
            ..needs
        };
        let Choice::Nobody { why } = auto(&needs, &mids, &HashMap::new()) else {
            panic!("nobody")
        };
        assert!(why.contains("0 cover 172.16.0.1"), "{why}");
    }
}
