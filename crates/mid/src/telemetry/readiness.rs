//! Whether the MID is ready: enrolled, and its last request to the instance answered.
//! The session reports each answer and failure; `/readyz` reads the state, and the
//! reconnect counter moves on each failing-to-answered transition.

use super::{Telemetry, names};
use openmid_proto::mid::MidStatus;

/// The session's state as `/readyz` tells it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Readiness {
    /// The instance has not answered yet (enrolling, or the first heartbeat).
    #[default]
    Starting,
    /// The last request was answered; the status the instance gave.
    Up(Option<MidStatus>),
    /// Requests fail (the instance is down or unreachable); why.
    Failing(String),
    /// The instance refused this MID for good; why.
    Refused(String),
    /// The MID is shutting down.
    Stopping,
}

impl Readiness {
    /// `None` when ready, else the reason it is not.
    pub fn reason(&self) -> Option<String> {
        match self {
            Readiness::Up(_) => None,
            Readiness::Starting => {
                Some("the instance has not answered yet (enrolling or connecting)".to_string())
            }
            Readiness::Failing(why) => Some(format!("the instance does not answer: {why}")),
            Readiness::Refused(why) => Some(format!("the instance refused this MID: {why}")),
            Readiness::Stopping => Some("the MID is shutting down".to_string()),
        }
    }
}

impl Telemetry {
    fn set_readiness(&self, next: Readiness) {
        let mut current = self.readiness.lock().unwrap_or_else(|e| e.into_inner());
        let back = matches!(*current, Readiness::Failing(_)) && matches!(next, Readiness::Up(_));
        if matches!(*current, Readiness::Stopping | Readiness::Refused(_)) {
            return;
        }
        let up = matches!(next, Readiness::Up(_));
        *current = next;
        drop(current);
        self.with(|| {
            if back {
                metrics::counter!(names::RECONNECTS).increment(1);
            }
            metrics::gauge!(names::SESSION_UP).set(if up { 1.0 } else { 0.0 });
        });
    }

    /// The instance answered (a heartbeat, a poll or an enrollment).
    pub fn session_ok(&self, status: Option<MidStatus>) {
        self.set_readiness(Readiness::Up(status));
    }

    /// A request to the instance failed and will be retried.
    pub fn session_failed(&self, why: &impl std::fmt::Display) {
        self.set_readiness(Readiness::Failing(why.to_string()));
    }

    /// The instance refused this MID for good.
    pub fn session_refused(&self, why: &impl std::fmt::Display) {
        self.set_readiness(Readiness::Refused(why.to_string()));
    }

    /// The MID is stopping.
    pub fn stopping(&self) {
        self.set_readiness(Readiness::Stopping);
    }

    /// The current state.
    pub fn readiness(&self) -> Readiness {
        self.readiness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_is_counted_once_per_outage_and_refusal_sticks() {
        let t = Telemetry::new();
        assert!(
            t.readiness().reason().is_some(),
            "not ready before an answer"
        );
        t.session_ok(Some(MidStatus::Up));
        assert_eq!(t.readiness(), Readiness::Up(Some(MidStatus::Up)));
        t.session_failed(&"connection refused");
        t.session_failed(&"connection refused");
        assert!(
            t.readiness()
                .reason()
                .is_some_and(|r| r.contains("connection refused"))
        );
        t.session_ok(Some(MidStatus::Up));
        t.session_ok(Some(MidStatus::Up));
        let text = t.render();
        assert!(
            text.contains("openmid_mid_session_reconnects_total 1\n"),
            "{text}"
        );
        assert!(text.contains("openmid_mid_session_up 1\n"), "{text}");
        t.session_refused(&"401: invalidated");
        t.session_ok(None);
        assert!(
            matches!(t.readiness(), Readiness::Refused(_)),
            "a refusal is final"
        );
    }
}
