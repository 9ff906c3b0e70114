//! Budget periods and the window of time each one counts, on UTC boundaries.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How often a budget starts over: every UTC day, every ISO week (Monday 00:00 UTC),
/// every calendar month (the 1st, 00:00 UTC), or never (`total`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum BudgetPeriod {
    Daily,
    Weekly,
    Monthly,
    Total,
}

/// The instants a period counts: `[start, end)`. A `total` period has no end and
/// starts at the Unix epoch, before any event can be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The window of this period that holds `at`.
    pub fn window(self, at: DateTime<Utc>) -> Window {
        let day = at.date_naive();
        let (first, next) = match self {
            Self::Daily => (day, day.checked_add_days(Days::new(1))),
            Self::Weekly => {
                let monday = day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (monday, monday.checked_add_days(Days::new(7)))
            }
            Self::Monthly => {
                let first = day.with_day(1).unwrap_or(day);
                (first, first.checked_add_months(Months::new(1)))
            }
            Self::Total => {
                return Window {
                    start: DateTime::UNIX_EPOCH,
                    end: None,
                }
            }
        };
        Window {
            start: midnight(first),
            end: next.map(midnight),
        }
    }
}

impl Window {
    /// The first UTC day the window counts (spend is kept per day).
    pub fn first_day(&self) -> NaiveDate {
        self.start.date_naive()
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        at >= self.start && self.end.is_none_or(|end| at < end)
    }
}

pub fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike, Weekday};
    use proptest::prelude::*;
    use strum::IntoEnumIterator;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn spelled_as_in_the_api() {
        assert_eq!(serde_json::to_value(BudgetPeriod::Monthly).unwrap(), "monthly");
        assert_eq!("weekly".parse::<BudgetPeriod>().unwrap(), BudgetPeriod::Weekly);
        assert!("month".parse::<BudgetPeriod>().is_err());
        assert!(serde_json::from_value::<BudgetPeriod>(serde_json::json!("Daily")).is_err());
    }

    #[test]
    fn known_windows() {
        // Wednesday 2026-03-04.
        let now = at(2026, 3, 4, 15);
        assert_eq!(
            BudgetPeriod::Daily.window(now),
            Window {
                start: at(2026, 3, 4, 0),
                end: Some(at(2026, 3, 5, 0))
            }
        );
        assert_eq!(
            BudgetPeriod::Weekly.window(now),
            Window {
                start: at(2026, 3, 2, 0),
                end: Some(at(2026, 3, 9, 0))
            }
        );
        assert_eq!(
            BudgetPeriod::Monthly.window(now),
            Window {
                start: at(2026, 3, 1, 0),
                end: Some(at(2026, 4, 1, 0))
            }
        );
        let total = BudgetPeriod::Total.window(now);
        assert_eq!((total.start, total.end), (DateTime::UNIX_EPOCH, None));
        assert!(total.contains(now));
    }

    #[test]
    fn a_sunday_belongs_to_the_week_that_began_on_monday() {
        let sunday = Utc.with_ymd_and_hms(2026, 3, 8, 23, 59, 59).unwrap();
        assert_eq!(BudgetPeriod::Weekly.window(sunday).start, at(2026, 3, 2, 0));
        // ISO weeks cross years: Thursday 2026-01-01 is in the week of Monday 2025-12-29.
        assert_eq!(
            BudgetPeriod::Weekly.window(at(2026, 1, 1, 12)).start,
            at(2025, 12, 29, 0)
        );
    }

    #[test]
    fn february_has_29_days_in_leap_years_only() {
        let len = |y| {
            let w = BudgetPeriod::Monthly.window(at(y, 2, 10, 0));
            (w.end.unwrap() - w.start).num_days()
        };
        assert_eq!(len(2024), 29);
        assert_eq!(len(2026), 28);
        assert_eq!(len(2000), 29);
        assert_eq!(len(2100), 28);
    }

    #[test]
    fn the_last_instant_of_a_month_is_in_that_month() {
        let last = Utc.with_ymd_and_hms(2026, 1, 31, 23, 59, 59).unwrap() + chrono::Duration::milliseconds(999);
        let w = BudgetPeriod::Monthly.window(last);
        assert_eq!(w.start, at(2026, 1, 1, 0));
        assert!(!w.contains(at(2026, 2, 1, 0)));
    }

    fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 1970 to 2200, to the millisecond.
        (0i64..7_258_118_400_000).prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
    }

    fn any_period() -> impl Strategy<Value = BudgetPeriod> {
        prop::sample::select(BudgetPeriod::iter().collect::<Vec<_>>())
    }

    proptest! {
        #[test]
        fn an_instant_lies_inside_its_window(t in any_instant(), period in any_period()) {
            let w = period.window(t);
            prop_assert!(w.contains(t));
            prop_assert!(w.start <= t);
            if let Some(end) = w.end {
                prop_assert!(t < end);
            }
        }

        #[test]
        fn windows_start_at_midnight_utc(t in any_instant(), period in any_period()) {
            let w = period.window(t);
            prop_assert_eq!(w.start.num_seconds_from_midnight(), 0);
            prop_assert_eq!(w.start.timestamp_subsec_nanos(), 0);
            if let Some(end) = w.end {
                prop_assert_eq!(end.num_seconds_from_midnight(), 0);
            }
        }

        #[test]
        fn one_window_ends_where_the_next_begins(t in any_instant(), period in any_period()) {
            let w = period.window(t);
            if let Some(end) = w.end {
                prop_assert_eq!(period.window(end).start, end);
                let last = end - chrono::Duration::nanoseconds(1);
                prop_assert_eq!(period.window(last), w);
            }
        }

        #[test]
        fn windows_have_the_lengths_of_their_calendar(t in any_instant(), period in any_period()) {
            let w = period.window(t);
            let days = w.end.map(|end| (end - w.start).num_days());
            match period {
                BudgetPeriod::Daily => prop_assert_eq!(days, Some(1)),
                BudgetPeriod::Weekly => {
                    prop_assert_eq!(days, Some(7));
                    prop_assert_eq!(w.start.weekday(), Weekday::Mon);
                }
                BudgetPeriod::Monthly => {
                    let d = w.start.date_naive();
                    prop_assert_eq!(d.day(), 1);
                    let leap = NaiveDate::from_ymd_opt(d.year(), 2, 29).is_some();
                    let expected = match d.month() {
                        2 if leap => 29,
                        2 => 28,
                        4 | 6 | 9 | 11 => 30,
                        _ => 31,
                    };
                    prop_assert_eq!(days, Some(expected));
                }
                BudgetPeriod::Total => prop_assert_eq!(days, None),
            }
        }
    }
}
