//! The MID lifecycle an admin drives: which status each admin action may be taken
//! from, where it leads, and the reason the history records. Dispatch applies it
//! (`Dispatcher::admin_action`) with what each change means for the MID's work.

use openmid_proto::mid::MidStatus;

/// What an admin can do to a MID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Let a pending MID take work.
    Validate,
    /// Take no new work; stay connected.
    Pause,
    /// Take work again after a pause or drain.
    Resume,
    /// Finish running work, take no more, then be `drained`.
    Drain,
    /// Refuse the MID everywhere, at once and for good.
    Invalidate,
}

impl AdminAction {
    /// Parses the URL word.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "validate" => AdminAction::Validate,
            "pause" => AdminAction::Pause,
            "resume" => AdminAction::Resume,
            "drain" => AdminAction::Drain,
            "invalidate" => AdminAction::Invalidate,
            _ => return None,
        })
    }

    /// The statuses it may be taken from, the one it leads to, and the reason recorded.
    pub(crate) fn transition(self) -> (&'static [MidStatus], MidStatus, &'static str) {
        use MidStatus::*;
        match self {
            AdminAction::Validate => (&[ValidationPending], Up, "validated by an admin"),
            AdminAction::Pause => (&[Up, Down, Draining, Drained], Paused, "paused by an admin"),
            AdminAction::Resume => (&[Paused, Draining, Drained], Up, "resumed by an admin"),
            AdminAction::Drain => (
                &[Up, Down, Paused],
                Draining,
                "draining: finishing running work",
            ),
            AdminAction::Invalidate => (
                &[
                    ValidationPending,
                    Up,
                    Down,
                    Paused,
                    Draining,
                    Drained,
                    Upgrading,
                ],
                Invalidated,
                "invalidated by an admin",
            ),
        }
    }
}
