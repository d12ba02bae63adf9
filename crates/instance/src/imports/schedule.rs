//! When a data source runs next: a cron expression read in a time zone, or a fixed
//! interval. Times are epoch milliseconds; the caller passes "now" (the scheduler's
//! clock), so tests can move time without waiting for it.

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use openmid_proto::import::{Schedule, parse_interval};
use openmid_proto::probe::{FieldError, field_error};

/// A schedule, checked and ready to evaluate.
#[derive(Debug, Clone)]
pub enum Compiled {
    /// A cron expression in a time zone.
    Cron {
        /// The parsed expression.
        cron: Box<Cron>,
        /// The zone its fields are read in.
        zone: Tz,
    },
    /// Every so many milliseconds.
    Every(i64),
}

impl Compiled {
    /// Checks and compiles `schedule`; errors name the field.
    pub fn new(schedule: &Schedule) -> Result<Self, FieldError> {
        match (&schedule.cron, &schedule.every) {
            (Some(expr), None) => {
                let zone = match schedule.time_zone.as_deref() {
                    None | Some("UTC" | "utc" | "Z") => Tz::UTC,
                    Some(name) => name.parse::<Tz>().map_err(|_| {
                        field_error(
                            "schedule.time_zone",
                            format!("`{name}` is not a time zone: UTC or an IANA name such as Europe/Paris"),
                        )
                    })?,
                };
                if expr.len() > 200 {
                    return Err(field_error("schedule.cron", "at most 200 bytes"));
                }
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .build()
                    .parse(expr)
                    .map_err(|e| {
                        field_error(
                            "schedule.cron",
                            format!("`{expr}` is not a cron expression: {e}"),
                        )
                    })?;
                let compiled = Self::Cron {
                    cron: Box::new(cron),
                    zone,
                };
                // An expression that can never fire (`0 0 30 2 *`) is refused now,
                // not discovered at run time.
                if compiled.next_after(0, None).is_none() {
                    return Err(field_error(
                        "schedule.cron",
                        format!("`{expr}` never fires"),
                    ));
                }
                Ok(compiled)
            }
            (None, Some(every)) => {
                let secs = parse_interval(every)?;
                Ok(Self::Every(i64::try_from(secs * 1000).unwrap_or(i64::MAX)))
            }
            (Some(_), Some(_)) => Err(field_error("schedule", "give `cron` or `every`, not both")),
            (None, None) => Err(field_error("schedule", "give `cron` or `every`")),
        }
    }

    /// The first time strictly after `now` the schedule fires. An interval counts
    /// from `anchor` (the previous run's start, or when the schedule was set) in
    /// whole steps, so a late tick does not shift later runs and missed ones are not
    /// run in a burst: only the next one due.
    pub fn next_after(&self, now: i64, anchor: Option<i64>) -> Option<i64> {
        match self {
            Self::Every(step) => {
                let anchor = anchor.unwrap_or(now);
                if anchor > now {
                    return Some(anchor);
                }
                let steps = (now - anchor) / step + 1;
                Some(anchor.saturating_add(steps.saturating_mul(*step)))
            }
            Self::Cron { cron, zone } => {
                let start =
                    zone.from_utc_datetime(&Utc.timestamp_millis_opt(now).single()?.naive_utc());
                let next = cron.find_next_occurrence(&start, false).ok()?;
                Some(next.timestamp_millis())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::time::parse_rfc3339;

    fn at(text: &str) -> i64 {
        parse_rfc3339(text).expect("time")
    }

    fn cron(expr: &str, zone: Option<&str>) -> Compiled {
        Compiled::new(&Schedule {
            cron: Some(expr.into()),
            every: None,
            time_zone: zone.map(str::to_string),
        })
        .expect("compiles")
    }

    #[test]
    fn cron_in_utc_and_in_a_zone() {
        let nightly = cron("0 2 * * *", None);
        assert_eq!(
            nightly.next_after(at("2026-12-01T10:00:00.000Z"), None),
            Some(at("2026-12-02T02:00:00.000Z"))
        );
        // 02:00 in Paris is 01:00 UTC in winter and 00:00 UTC in summer.
        let paris = cron("0 2 * * *", Some("Europe/Paris"));
        assert_eq!(
            paris.next_after(at("2026-12-01T10:00:00.000Z"), None),
            Some(at("2026-12-02T01:00:00.000Z"))
        );
        assert_eq!(
            paris.next_after(at("2026-07-01T10:00:00.000Z"), None),
            Some(at("2026-07-02T00:00:00.000Z"))
        );
        // Weekdays only, with seconds.
        let weekdays = cron("30 15 9 * * MON-FRI", None);
        // 2026-12-04 is a Friday; the next weekday after it is Monday the 7th.
        assert_eq!(
            weekdays.next_after(at("2026-12-04T10:00:00.000Z"), None),
            Some(at("2026-12-07T09:15:30.000Z"))
        );
    }

    #[test]
    fn a_cron_time_skipped_by_daylight_saving_still_fires() {
        // 2027-03-28 02:30 does not exist in Paris (clocks go 02:00 → 03:00).
        let paris = cron("30 2 * * *", Some("Europe/Paris"));
        let next = paris
            .next_after(at("2027-03-27T12:00:00.000Z"), None)
            .expect("fires");
        assert!(next > at("2027-03-27T12:00:00.000Z"));
        assert!(next <= at("2027-03-29T01:30:00.000Z"), "{next}");
    }

    #[test]
    fn intervals_keep_their_phase() {
        let hourly = Compiled::new(&Schedule {
            cron: None,
            every: Some("1h".into()),
            time_zone: None,
        })
        .expect("compiles");
        let anchor = at("2026-12-01T10:00:00.000Z");
        assert_eq!(
            hourly.next_after(at("2026-12-01T10:00:00.000Z"), Some(anchor)),
            Some(at("2026-12-01T11:00:00.000Z"))
        );
        // Late by three and a half hours: the next one on the grid, not a burst.
        assert_eq!(
            hourly.next_after(at("2026-12-01T13:30:00.000Z"), Some(anchor)),
            Some(at("2026-12-01T14:00:00.000Z"))
        );
    }

    #[test]
    fn bad_schedules_name_their_field() {
        let bad = |cron: Option<&str>, every: Option<&str>, zone: Option<&str>| {
            Compiled::new(&Schedule {
                cron: cron.map(str::to_string),
                every: every.map(str::to_string),
                time_zone: zone.map(str::to_string),
            })
            .expect_err("refused")
            .field
        };
        assert_eq!(bad(Some("61 * * * *"), None, None), "schedule.cron");
        assert_eq!(bad(Some("not cron"), None, None), "schedule.cron");
        assert_eq!(bad(Some("0 0 30 2 *"), None, None), "schedule.cron");
        assert_eq!(
            bad(Some("0 2 * * *"), None, Some("Mars/Olympus")),
            "schedule.time_zone"
        );
        assert_eq!(bad(None, Some("10s"), None), "schedule.every");
        assert_eq!(bad(None, None, None), "schedule");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(expr in "\\PC{0,40}", zone in "[A-Za-z/_]{0,20}") {
            let schedule = Schedule { cron: Some(expr), every: None, time_zone: Some(zone) };
            if let Ok(compiled) = Compiled::new(&schedule) {
                let now = at("2026-12-01T10:00:00.000Z");
                if let Some(next) = compiled.next_after(now, None) {
                    proptest::prop_assert!(next > now);
                }
            }
        }
    }
}
