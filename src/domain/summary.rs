//! The usage summary: which window a query covers and at what resolution, and the
//! latency statistics read from the roll-ups' histograms.

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Timelike, Utc};

use super::{
    activity::{self, percent_of, WindowError},
    retention::hourly_rollup_start,
    rollup::percentile_bucket,
    usage::retention_start,
};

/// The longest window answered hour by hour; longer ones are answered day by day.
pub const MAX_HOURLY_SPAN_HOURS: i64 = 48;

/// A named window ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The current UTC hour and the 23 before it, hour by hour.
    Last24Hours,
    /// Today (UTC) and the 6 days before, day by day.
    Last7Days,
    /// Today (UTC) and the 29 days before, day by day.
    Last30Days,
}

/// The size of a series bucket, and the roll-up table that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Hour,
    Day,
}

impl Step {
    pub fn duration(self) -> Duration {
        match self {
            Step::Hour => Duration::hours(1),
            Step::Day => Duration::days(1),
        }
    }
}

/// `[from, to)`, both on `step` boundaries (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step: Step,
}

impl SummaryWindow {
    /// The start of every bucket, oldest first.
    pub fn buckets(&self) -> impl Iterator<Item = DateTime<Utc>> + use<> {
        let (to, step) = (self.to, self.step.duration());
        std::iter::successors(Some(self.from), move |at| Some(*at + step)).take_while(move |at| *at < to)
    }

    /// Whole UTC days as a window, at hourly resolution when they span at most 48
    /// hours and the hourly roll-ups still cover them.
    fn of_days(days: activity::DayWindow, hourly_from: DateTime<Utc>) -> Self {
        let from = midnight(days.from);
        let to = midnight(days.to) + Duration::days(1);
        let hourly = to - from <= Duration::hours(MAX_HOURLY_SPAN_HOURS) && from >= hourly_from;
        SummaryWindow {
            from,
            to,
            step: if hourly { Step::Hour } else { Step::Day },
        }
    }
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The window of a summary query. Either a preset (default: the last 24 hours, cut to
/// the retention when that is a single day), or `from`/`to`: whole days as
/// `YYYY-MM-DD` (both included, as in the activity API; `from` alone runs to today), or
/// whole UTC hours as RFC 3339 instants (`to` excluded; both needed; at most 48 hours
/// apart). Days follow the activity API's rules; a window reaching before the
/// retention is refused with its first day.
pub fn window(
    preset: Option<Preset>,
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
    retention_days: i32,
) -> Result<SummaryWindow, WindowError> {
    let hourly_from = hourly_rollup_start(now, retention_days);
    if preset.is_some() && (from.is_some() || to.is_some()) {
        return Err(WindowError::Invalid(
            "window",
            "give either `window` or `from`/`to`, not both".into(),
        ));
    }
    let is_instant = |text: Option<&str>| text.is_some_and(|t| t.contains('T') || t.contains('t'));
    if is_instant(from) || is_instant(to) {
        return instants(from, to, now, retention_days, hourly_from);
    }
    if from.is_some() || to.is_some() {
        let days = activity::window(None, from, to, now, retention_days)?;
        return Ok(SummaryWindow::of_days(days, hourly_from));
    }
    let this_hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    let days = |n: i64| activity::window(Some(n), None, None, now, retention_days);
    match preset {
        Some(Preset::Last7Days) => Ok(SummaryWindow::of_days(days(7)?, DateTime::<Utc>::MAX_UTC)),
        Some(Preset::Last30Days) => Ok(SummaryWindow::of_days(days(30)?, DateTime::<Utc>::MAX_UTC)),
        Some(Preset::Last24Hours) | None => {
            let from = this_hour - Duration::hours(23);
            let earliest = retention_start(now, retention_days);
            if from < earliest {
                // Only a one-day retention is shorter than 24 hours.
                if preset.is_some() {
                    return Err(WindowError::RetentionExceeded {
                        earliest: earliest.date_naive(),
                    });
                }
            }
            Ok(SummaryWindow {
                from: from.max(earliest),
                to: this_hour + Duration::hours(1),
                step: Step::Hour,
            })
        }
    }
}

/// `from`/`to` as whole UTC hours.
fn instants(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
    retention_days: i32,
    hourly_from: DateTime<Utc>,
) -> Result<SummaryWindow, WindowError> {
    let (Some(from), Some(to)) = (from, to) else {
        return Err(WindowError::Invalid(
            if from.is_none() { "from" } else { "to" },
            "as an instant, give both `from` and `to`".into(),
        ));
    };
    let from = parse_hour("from", from)?;
    let to = parse_hour("to", to)?;
    if from >= to {
        return Err(WindowError::Invalid("from", "must be before `to`".into()));
    }
    if to - from > Duration::hours(MAX_HOURLY_SPAN_HOURS) {
        return Err(WindowError::Invalid(
            "to",
            format!(
                "instants may span at most {MAX_HOURLY_SPAN_HOURS} hours; use days (YYYY-MM-DD) for longer windows"
            ),
        ));
    }
    let earliest = retention_start(now, retention_days);
    if from < earliest {
        return Err(WindowError::RetentionExceeded {
            earliest: earliest.date_naive(),
        });
    }
    if from < hourly_from {
        return Err(WindowError::Invalid(
            "from",
            format!(
                "hour by hour, the last {} days can be read; ask for older days as YYYY-MM-DD",
                super::retention::HOURLY_ROLLUP_DAYS
            ),
        ));
    }
    Ok(SummaryWindow {
        from,
        to,
        step: Step::Hour,
    })
}

fn parse_hour(name: &'static str, text: &str) -> Result<DateTime<Utc>, WindowError> {
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|_| WindowError::Invalid(name, "must be a date (YYYY-MM-DD) or an RFC 3339 instant".into()))?
        .with_timezone(&Utc);
    if at.minute() != 0 || at.second() != 0 || at.nanosecond() != 0 {
        return Err(WindowError::Invalid(name, "must be a whole UTC hour".into()));
    }
    Ok(at)
}

/// Mean and 95th percentile of a duration (latency, time to first token).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distribution {
    /// Calls that reported it.
    pub samples: i64,
    /// The exact mean (from the sum), to two decimals; `None` without samples.
    pub mean_ms: Option<f64>,
    /// The upper bound of the histogram bucket holding the 95th percentile; `None`
    /// without samples, or when it lies in the open top bucket.
    pub p95_ms: Option<i64>,
    /// The lower bound of that bucket: the 95th percentile lies in
    /// (`p95_above_ms`, `p95_ms`] (from 0 inclusive in the first bucket).
    pub p95_above_ms: Option<i64>,
}

pub fn distribution(sum_ms: i64, samples: i64, buckets: &[i64]) -> Distribution {
    let mean_ms = (samples > 0).then(|| (sum_ms as f64 * 100.0 / samples as f64).round() / 100.0);
    let bucket = percentile_bucket(buckets, 0.95);
    Distribution {
        samples,
        mean_ms,
        p95_ms: bucket.and_then(|(_, upper)| upper),
        p95_above_ms: bucket.map(|(lower, _)| lower),
    }
}

/// Successful calls in percent of all (0 to 100, two decimals).
pub fn success_rate(requests: i64, errors: i64) -> f64 {
    percent_of(requests - errors, requests)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::rollup::{bucket_index, BUCKET_COUNT};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 15, 30, 0).unwrap()
    }

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap()
    }

    fn invalid(r: Result<SummaryWindow, WindowError>) -> &'static str {
        match r {
            Err(WindowError::Invalid(name, _)) => name,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn presets() {
        let w = window(None, None, None, now(), 3).unwrap();
        assert_eq!((w.from, w.to, w.step), (at(2, 16), at(3, 16), Step::Hour));
        assert_eq!(w.buckets().count(), 24);
        assert_eq!(window(Some(Preset::Last24Hours), None, None, now(), 90).unwrap(), w);
        let w = window(Some(Preset::Last7Days), None, None, now(), 90).unwrap();
        assert_eq!(
            (w.from, w.to, w.step),
            (at(3, 0) - Duration::days(6), at(4, 0), Step::Day)
        );
        assert_eq!(w.buckets().count(), 7);
        let w = window(Some(Preset::Last30Days), None, None, now(), 90).unwrap();
        assert_eq!(w.buckets().count(), 30);
        // A one-day retention: the default is cut to today; asking for 24 hours is refused.
        let w = window(None, None, None, now(), 1).unwrap();
        assert_eq!((w.from, w.buckets().count()), (at(3, 0), 16));
        assert!(matches!(
            window(Some(Preset::Last24Hours), None, None, now(), 1),
            Err(WindowError::RetentionExceeded { .. })
        ));
        // Seven days on the free plan reach before its three days.
        assert_eq!(
            window(Some(Preset::Last7Days), None, None, now(), 3),
            Err(WindowError::RetentionExceeded {
                earliest: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
            })
        );
    }

    #[test]
    fn days_are_hourly_up_to_two_and_while_hourly_roll_ups_last() {
        let w = window(None, Some("2026-12-02"), Some("2026-12-03"), now(), 90).unwrap();
        assert_eq!((w.from, w.to, w.step), (at(2, 0), at(4, 0), Step::Hour));
        assert_eq!(w.buckets().count(), 48);
        let w = window(None, Some("2026-12-01"), Some("2026-12-03"), now(), 90).unwrap();
        assert_eq!((w.step, w.buckets().count()), (Step::Day, 3));
        // Older than the hourly roll-ups: day by day.
        let w = window(None, Some("2026-11-20"), Some("2026-11-20"), now(), 90).unwrap();
        assert_eq!((w.step, w.buckets().count()), (Step::Day, 1));
        let w = window(None, Some("2026-11-26"), Some("2026-11-26"), now(), 90).unwrap();
        assert_eq!(w.step, Step::Hour);
    }

    #[test]
    fn instants_are_whole_hours_at_most_48_apart() {
        let w = window(
            None,
            Some("2026-12-03T01:00:00Z"),
            Some("2026-12-03T04:00:00Z"),
            now(),
            3,
        )
        .unwrap();
        assert_eq!((w.from, w.to, w.step), (at(3, 1), at(3, 4), Step::Hour));
        assert_eq!(w.buckets().collect::<Vec<_>>(), [at(3, 1), at(3, 2), at(3, 3)]);
        // Another offset naming a whole UTC hour is fine.
        let w = window(
            None,
            Some("2026-12-03T03:00:00+02:00"),
            Some("2026-12-03T04:00:00Z"),
            now(),
            3,
        )
        .unwrap();
        assert_eq!(w.from, at(3, 1));
        let ok = window(
            None,
            Some("2026-12-01T12:00:00Z"),
            Some("2026-12-03T12:00:00Z"),
            now(),
            3,
        );
        assert!(ok.is_ok());
        for (from, to, name) in [
            ("2026-12-01T12:00:00Z", "2026-12-03T13:00:00Z", "to"),
            ("2026-12-03T01:30:00Z", "2026-12-03T04:00:00Z", "from"),
            ("2026-12-03T01:00:00+05:30", "2026-12-03T04:00:00Z", "from"),
            ("2026-12-03T04:00:00Z", "2026-12-03T04:00:00Z", "from"),
            ("2026-12-03T01:00:00Z", "2026-12-03", "to"),
            ("2026-12-03T25:00:00Z", "2026-12-03T04:00:00Z", "from"),
        ] {
            assert_eq!(
                invalid(window(None, Some(from), Some(to), now(), 3)),
                name,
                "{from} {to}"
            );
        }
        assert_eq!(
            invalid(window(None, Some("2026-12-03T01:00:00Z"), None, now(), 3)),
            "to"
        );
        assert_eq!(
            window(
                None,
                Some("2026-11-30T23:00:00Z"),
                Some("2026-12-01T04:00:00Z"),
                now(),
                3
            ),
            Err(WindowError::RetentionExceeded {
                earliest: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
            })
        );
        // Retained, but older than the hourly roll-ups.
        assert_eq!(
            invalid(window(
                None,
                Some("2026-11-25T23:00:00Z"),
                Some("2026-11-26T01:00:00Z"),
                now(),
                90
            )),
            "from"
        );
    }

    #[test]
    fn a_preset_with_from_or_to_is_refused() {
        assert_eq!(
            invalid(window(Some(Preset::Last7Days), Some("2026-12-01"), None, now(), 90)),
            "window"
        );
        assert_eq!(
            invalid(window(Some(Preset::Last24Hours), None, Some("2026-12-01"), now(), 90)),
            "window"
        );
    }

    #[test]
    fn distribution_of_a_known_histogram() {
        let mut buckets = vec![0; BUCKET_COUNT];
        for ms in (1..=100).map(|i| i * 10) {
            buckets[bucket_index(ms)] += 1;
        }
        let d = distribution((1..=100).map(|i| i * 10).sum(), 100, &buckets);
        // Mean 505 ms; the 95th of 10..=1000 ms is 950 ms, in the (750, 1000] bucket.
        assert_eq!(
            d,
            Distribution {
                samples: 100,
                mean_ms: Some(505.0),
                p95_ms: Some(1_000),
                p95_above_ms: Some(750)
            }
        );
        let mut slow = vec![0; BUCKET_COUNT];
        slow[0] = 5;
        slow[16] = 95;
        let d = distribution(0, 100, &slow);
        assert_eq!((d.p95_ms, d.p95_above_ms), (None, Some(60_000)));
        slow[0] = 95;
        slow[16] = 5;
        assert_eq!(distribution(0, 100, &slow).p95_above_ms, Some(0));
        let none = distribution(0, 0, &[0; BUCKET_COUNT]);
        assert_eq!((none.mean_ms, none.p95_ms, none.p95_above_ms), (None, None, None));
        assert_eq!(distribution(10, 3, &[3]).mean_ms, Some(3.33));
    }
}
