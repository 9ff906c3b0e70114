//! What the retention purge may remove, and when.
//!
//! An organization sees its raw events, request ids and decision log for its plan's
//! retention (`usage::retention_start`). Two kinds of data outlive that window on
//! purpose, because removing them would change money:
//!
//! - the budget spend ledger (`spend_ledger`): a monthly or total budget must keep
//!   counting what was spent before the oldest retained event. The purge never
//!   touches it.
//! - the per-customer daily cost ledger (`customer_cost_daily`), which invoices are
//!   made from, and the daily roll-ups (`usage_daily`, which also hold each customer's
//!   cost per day, and their coarse copies `usage_daily_models`, `_customers`,
//!   `_routes`): they are kept for the retention or the billing horizon
//!   (`MP_BILLING_HORIZON_DAYS`, default [`BILLING_HORIZON_DAYS`]), whichever is
//!   longer, so a month can be invoiced (or re-issued) a year later even on the free
//!   plan. Analytics never read past the retention anyway: their windows are checked
//!   against it (`activity::window`).
//!
//! The hourly roll-ups (`usage_hourly`) only serve summaries of up to 48 hours; they
//! are kept for [`HOURLY_ROLLUP_DAYS`] days, or the retention when it is shorter.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::usage::retention_start;

/// How long per-customer daily costs are kept whatever the plan, by default: thirteen
/// months and a few days, so last year's same month can still be invoiced and compared.
pub const BILLING_HORIZON_DAYS: i32 = 400;
/// The shortest billing horizon a deployment may set: last month must stay invoiceable
/// on any day of this month (31 + 31 days, and a few days of grace).
pub const MIN_BILLING_HORIZON_DAYS: i32 = 70;
/// The longest billing horizon a deployment may set (ten years).
pub const MAX_BILLING_HORIZON_DAYS: i32 = 3660;

/// How many UTC days of hourly roll-ups are kept (today and the seven before): more
/// than the 48 hours a summary reads at hourly resolution.
pub const HOURLY_ROLLUP_DAYS: i32 = 8;

/// Where one organization's purge stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Raw events, request ids and decisions before this instant go.
    pub events_before: DateTime<Utc>,
    /// Daily roll-ups and customer cost ledger rows of days before this one go.
    pub rollups_before: NaiveDate,
    /// Hourly roll-ups of hours starting before this instant go.
    pub hourly_rollups_before: DateTime<Utc>,
}

/// Where the purge of an organization with `retention_days` stops at `now`, billing
/// data kept for `billing_horizon_days`.
pub fn cutoffs(now: DateTime<Utc>, retention_days: i32, billing_horizon_days: i32) -> Cutoffs {
    let events_before = retention_start(now, retention_days);
    let kept_days = retention_days.max(billing_horizon_days);
    Cutoffs {
        events_before,
        rollups_before: retention_start(now, kept_days).date_naive(),
        hourly_rollups_before: hourly_rollup_start(now, retention_days),
    }
}

/// The first instant hourly roll-ups are kept for: the start of the retention or of
/// the last [`HOURLY_ROLLUP_DAYS`] days, whichever is later. Also the earliest hour a
/// summary can read at hourly resolution.
pub fn hourly_rollup_start(now: DateTime<Utc>, retention_days: i32) -> DateTime<Utc> {
    retention_start(now, retention_days.min(HOURLY_ROLLUP_DAYS))
}

/// Whether the daily partition of `day` holds nothing any organization still keeps:
/// the whole day lies before the start of the longest retention of all.
pub fn partition_expired(day: NaiveDate, now: DateTime<Utc>, longest_retention_days: i32) -> bool {
    let end_of_day = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc() + Duration::days(1));
    end_of_day.is_some_and(|end| end <= retention_start(now, longest_retention_days))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn a_three_day_retention_keeps_today_and_two_days_before() {
        let c = cutoffs(at(2026, 12, 2, 15), 3, BILLING_HORIZON_DAYS);
        assert_eq!(c.events_before, at(2026, 11, 30, 0));
        // Roll-ups: the billing horizon, 400 days back.
        assert_eq!(c.rollups_before, NaiveDate::from_ymd_opt(2025, 10, 29).unwrap());
        // Hourly roll-ups: the retention, shorter than eight days.
        assert_eq!(c.hourly_rollups_before, at(2026, 11, 30, 0));
        // Eight days on longer retentions.
        assert_eq!(
            cutoffs(at(2026, 12, 2, 15), 90, BILLING_HORIZON_DAYS).hourly_rollups_before,
            at(2026, 11, 25, 0)
        );
    }

    #[test]
    fn a_retention_longer_than_the_horizon_keeps_roll_ups_as_long() {
        let c = cutoffs(at(2026, 12, 2, 15), 365, BILLING_HORIZON_DAYS);
        assert_eq!(c.rollups_before, NaiveDate::from_ymd_opt(2025, 10, 29).unwrap());
        assert_eq!(
            cutoffs(at(2026, 12, 2, 0), 401, BILLING_HORIZON_DAYS).rollups_before,
            NaiveDate::from_ymd_opt(2025, 10, 28).unwrap()
        );
    }

    #[test]
    fn a_shorter_billing_horizon_keeps_billing_data_that_many_days() {
        // 70 days from 2 Dec, today included: 24 Sep on.
        let c = cutoffs(at(2026, 12, 2, 15), 3, 70);
        assert_eq!(c.rollups_before, NaiveDate::from_ymd_opt(2026, 9, 24).unwrap());
        assert_eq!(c.events_before, at(2026, 11, 30, 0));
        // A retention longer than the horizon wins.
        let c = cutoffs(at(2026, 12, 2, 15), 90, 70);
        assert_eq!(c.rollups_before, NaiveDate::from_ymd_opt(2026, 9, 4).unwrap());
    }

    #[test]
    fn a_partition_goes_only_when_its_whole_day_is_out_of_every_retention() {
        let now = at(2026, 12, 2, 15);
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        // Longest retention 3 days: 30 Nov is still kept, 29 Nov is not.
        assert!(!partition_expired(day(30), now, 3));
        assert!(partition_expired(day(29), now, 3));
        assert!(!partition_expired(day(29), now, 4));
    }

    proptest! {
        #[test]
        fn roll_ups_outlive_events_and_nothing_retained_is_expired(
            days in 1i32..=365, hour in 0u32..24, offset in 0i64..800,
        ) {
            let now = at(2026, 12, 2, hour);
            let c = cutoffs(now, days, BILLING_HORIZON_DAYS);
            prop_assert!(c.rollups_before <= c.events_before.date_naive());
            prop_assert!(c.hourly_rollups_before >= c.events_before);
            if days >= 3 {
                // Enough for a 48-hour summary whenever the retention has it.
                prop_assert!(now - c.hourly_rollups_before >= Duration::hours(48));
            }
            let day = now.date_naive() - Duration::days(offset);
            let kept = day >= c.events_before.date_naive();
            prop_assert_eq!(partition_expired(day, now, days), !kept);
        }
    }
}
