//! The day window an analytics query covers, and what the organization's retention
//! lets it see.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use super::usage::retention_start;

/// The longest window one query may cover, in days (a leap year).
pub const MAX_WINDOW_DAYS: i64 = 366;
/// `days` when the query names no window, unless the retention is shorter.
pub const DEFAULT_WINDOW_DAYS: i64 = 7;

/// Whole UTC days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayWindow {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl DayWindow {
    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// Every day of the window, oldest first.
    pub fn each_day(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        let to = self.to;
        self.from.iter_days().take_while(move |day| *day <= to)
    }
}

/// Why a window was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowError {
    /// A parameter is malformed or out of range: (parameter, what is wrong).
    Invalid(&'static str, String),
    /// The window starts before the oldest day the organization keeps. Answering with
    /// the days that remain would look like a quiet period, so the query is refused.
    RetentionExceeded { earliest: NaiveDate },
}

/// The window `days` / `from` / `to` ask for. `from` and `to` (`YYYY-MM-DD`) override
/// `days`; `from` alone runs to today, `to` alone goes back `days`. With nothing given
/// the window is the last 7 days, or the whole retention when it is shorter (so the
/// default query works on every plan).
pub fn window(
    days: Option<i64>,
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
    retention_days: i32,
) -> Result<DayWindow, WindowError> {
    let today = now.date_naive();
    let earliest = retention_start(now, retention_days).date_naive();
    if let Some(days) = days {
        if !(1..=MAX_WINDOW_DAYS).contains(&days) {
            return Err(WindowError::Invalid(
                "days",
                format!("must be between 1 and {MAX_WINDOW_DAYS}"),
            ));
        }
    }
    let from = from.map(|text| parse_day("from", text)).transpose()?;
    let to = to.map(|text| parse_day("to", text)).transpose()?;
    let span = |days: i64| Duration::days(days - 1);
    let window = match (from, to) {
        (Some(from), Some(to)) => DayWindow { from, to },
        (Some(from), None) => DayWindow {
            from,
            to: today.max(from),
        },
        (None, Some(to)) => DayWindow {
            from: to - span(days.unwrap_or(DEFAULT_WINDOW_DAYS)),
            to,
        },
        (None, None) => {
            let days = days.unwrap_or_else(|| DEFAULT_WINDOW_DAYS.min(i64::from(retention_days.max(1))));
            DayWindow {
                from: today - span(days),
                to: today,
            }
        }
    };
    if window.from > window.to {
        return Err(WindowError::Invalid("from", "must not be after `to`".into()));
    }
    if window.days() > MAX_WINDOW_DAYS {
        return Err(WindowError::Invalid(
            "from",
            format!("the window spans {} days; at most {MAX_WINDOW_DAYS}", window.days()),
        ));
    }
    if window.from < earliest {
        return Err(WindowError::RetentionExceeded { earliest });
    }
    Ok(window)
}

/// `part` in percent of `whole`, to two decimals; 0 when `whole` is 0.
pub fn percent_of(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

fn parse_day(name: &'static str, text: &str) -> Result<NaiveDate, WindowError> {
    iso_date(text).map_err(|e| WindowError::Invalid(name, e.0))
}

/// A calendar date written exactly as `YYYY-MM-DD`.
pub fn iso_date(text: &str) -> Result<NaiveDate, super::Invalid> {
    let well_formed = text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-';
    well_formed
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| super::Invalid::new("must be a date as YYYY-MM-DD"))
}

/// The Monday that starts the ISO week holding `day`.
pub fn week_start(day: NaiveDate) -> NaiveDate {
    day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday()))
}

/// The endpoint an entity report groups a call under: its path, except that every
/// `/a2a/{agentId}` path is one endpoint (the agents themselves are the agent report).
pub fn endpoint_group(path: &str) -> &str {
    if path.starts_with("/a2a/") {
        A2A_ENDPOINT
    } else {
        path
    }
}

/// The one endpoint every agent-to-agent call is reported under.
pub const A2A_ENDPOINT: &str = "/a2a/{agentId}";

impl DayWindow {
    /// The Mondays of the first and last ISO weeks that lie wholly inside the window;
    /// `None` when no whole week does. A report sums whole weeks from week roll-ups and
    /// only the days outside them from day roll-ups.
    pub fn whole_weeks(&self) -> Option<(NaiveDate, NaiveDate)> {
        let first = week_start(self.from + chrono::Days::new(6));
        let last = week_start(self.to + chrono::Days::new(1)) - chrono::Days::new(7);
        (first <= last).then_some((first, last))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 15, 30, 0).unwrap()
    }

    #[test]
    fn whole_weeks_are_the_iso_weeks_inside_the_window() {
        // 2026-11-30 is a Monday.
        assert_eq!(week_start(day("2026-11-30")), day("2026-11-30"));
        assert_eq!(week_start(day("2026-12-06")), day("2026-11-30"));
        assert_eq!(week_start(day("2026-12-07")), day("2026-12-07"));
        let weeks = |from: &str, to: &str| {
            DayWindow {
                from: day(from),
                to: day(to),
            }
            .whole_weeks()
        };
        // Exactly one week; one week with a day on each side; two weeks.
        assert_eq!(
            weeks("2026-11-30", "2026-12-06"),
            Some((day("2026-11-30"), day("2026-11-30")))
        );
        assert_eq!(
            weeks("2026-11-29", "2026-12-07"),
            Some((day("2026-11-30"), day("2026-11-30")))
        );
        assert_eq!(
            weeks("2026-11-23", "2026-12-06"),
            Some((day("2026-11-23"), day("2026-11-30")))
        );
        // Seven days that are not one ISO week; a single day.
        assert_eq!(weeks("2026-12-01", "2026-12-07"), None);
        assert_eq!(weeks("2026-12-02", "2026-12-02"), None);
    }

    proptest! {
        /// The whole weeks and the days outside them cover each day of the window once.
        #[test]
        fn whole_weeks_and_edge_days_cover_the_window_once(start in 0u64..800, len in 0u64..120) {
            let from = day("2025-01-01") + chrono::Days::new(start);
            let w = DayWindow { from, to: from + chrono::Days::new(len) };
            let mut covered = Vec::new();
            if let Some((first, last)) = w.whole_weeks() {
                prop_assert!(first >= w.from && last + chrono::Days::new(6) <= w.to);
                let mut monday = first;
                while monday <= last {
                    covered.extend((0..7).map(|i| monday + chrono::Days::new(i)));
                    monday = monday + chrono::Days::new(7);
                }
            }
            let in_weeks = |d: NaiveDate| w.whole_weeks().is_some_and(|(f, l)| d >= f && d <= l + chrono::Days::new(6));
            covered.extend(w.each_day().filter(|d| !in_weeks(*d)));
            covered.sort();
            prop_assert_eq!(covered, w.each_day().collect::<Vec<_>>());
        }
    }

    #[test]
    fn agent_calls_share_one_endpoint() {
        assert_eq!(endpoint_group("/a2a/planner"), A2A_ENDPOINT);
        assert_eq!(endpoint_group("/chat/completions"), "/chat/completions");
        assert_eq!(endpoint_group("/a2a"), "/a2a");
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_default_is_seven_days_or_the_whole_shorter_retention() {
        let pro = window(None, None, None, now(), 90).unwrap();
        assert_eq!(
            (pro.from, pro.to, pro.days()),
            (day("2026-11-26"), day("2026-12-02"), 7)
        );
        let free = window(None, None, None, now(), 3).unwrap();
        assert_eq!((free.from, free.days()), (day("2026-11-30"), 3));
        assert_eq!(free.each_day().count(), 3);
    }

    #[test]
    fn from_and_to_override_days() {
        let w = window(Some(30), Some("2026-11-01"), Some("2026-11-10"), now(), 90).unwrap();
        assert_eq!((w.from, w.to), (day("2026-11-01"), day("2026-11-10")));
        let w = window(None, Some("2026-11-20"), None, now(), 90).unwrap();
        assert_eq!((w.from, w.to), (day("2026-11-20"), day("2026-12-02")));
        let w = window(Some(3), None, Some("2026-11-10"), now(), 90).unwrap();
        assert_eq!((w.from, w.to), (day("2026-11-08"), day("2026-11-10")));
    }

    #[test]
    fn bad_windows_say_which_parameter() {
        let invalid = |r: Result<DayWindow, WindowError>| match r {
            Err(WindowError::Invalid(name, _)) => name,
            other => panic!("{other:?}"),
        };
        assert_eq!(invalid(window(Some(0), None, None, now(), 90)), "days");
        assert_eq!(invalid(window(Some(-3), None, None, now(), 90)), "days");
        assert_eq!(invalid(window(Some(367), None, None, now(), 365)), "days");
        assert_eq!(
            invalid(window(None, Some("2026-11-10"), Some("2026-11-09"), now(), 90)),
            "from"
        );
        for bad in [
            "2026-13-01",
            "2026-1-05",
            "26-11-01",
            "2026-11-01T00:00:00Z",
            "yesterday",
            "",
        ] {
            assert_eq!(invalid(window(None, Some(bad), None, now(), 90)), "from", "{bad}");
        }
        assert_eq!(
            invalid(window(None, Some("2025-01-01"), Some("2026-12-01"), now(), 365)),
            "from"
        );
    }

    #[test]
    fn reaching_before_the_retention_is_refused_with_the_earliest_day() {
        let earliest = day("2026-11-30");
        assert_eq!(
            window(Some(7), None, None, now(), 3),
            Err(WindowError::RetentionExceeded { earliest })
        );
        assert_eq!(
            window(None, Some("2026-11-29"), None, now(), 3),
            Err(WindowError::RetentionExceeded { earliest })
        );
        assert!(window(None, Some("2026-11-30"), None, now(), 3).is_ok());
    }

    #[test]
    fn rates_are_percentages_to_two_decimals() {
        assert_eq!(percent_of(1, 3), 33.33);
        assert_eq!(percent_of(2, 3), 66.67);
        assert_eq!(percent_of(3, 3), 100.0);
        assert_eq!(percent_of(0, 0), 0.0);
    }

    proptest! {
        #[test]
        fn an_accepted_window_is_inside_the_retention_and_the_limit(
            days in proptest::option::of(-5i64..400),
            from_ago in proptest::option::of(0i64..400),
            len in proptest::option::of(0i64..400),
            retention in 1i32..=365,
        ) {
            let today = now().date_naive();
            let from = from_ago.map(|ago| (today - Duration::days(ago)).format("%Y-%m-%d").to_string());
            let to = from_ago.zip(len).map(|(ago, len)| (today - Duration::days(ago) + Duration::days(len)).format("%Y-%m-%d").to_string());
            if let Ok(w) = window(days, from.as_deref(), to.as_deref(), now(), retention) {
                prop_assert!(w.from <= w.to);
                prop_assert!(w.days() <= MAX_WINDOW_DAYS);
                prop_assert!(w.from >= retention_start(now(), retention).date_naive());
                prop_assert_eq!(w.each_day().count() as i64, w.days());
            }
        }
    }
}
