//! Budgets and rate limits: what they apply to, the values they may take, which alert
//! thresholds a change of spend crosses, and whether a hard budget lets a call through.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    money::MONEY_SCALE,
    period::{BudgetPeriod, Window},
    Invalid,
};

/// What a budget, a rate limit or a line of the spend ledger applies to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
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
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum BudgetScope {
    /// One of the tenant's end customers (`user` on usage events).
    Customer,
    /// An agent (`agentId`, or the `{agentId}` of an `/a2a/{agentId}` endpoint).
    Agent,
    ApiKey,
    Project,
    /// The whole organization.
    Organization,
}

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The scopes an organization can give defaults to: every customer (or agent) without
/// a budget or rate limit of its own gets the organization's default from its first
/// request on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::EnumIter)]
#[serde(rename_all = "camelCase")]
pub enum DefaultScope {
    Customer,
    Agent,
}

impl DefaultScope {
    pub fn scope(self) -> BudgetScope {
        match self {
            Self::Customer => BudgetScope::Customer,
            Self::Agent => BudgetScope::Agent,
        }
    }
}

/// The largest budget, in USD. Keeps every budget far inside `NUMERIC(20, 10)` and,
/// in micro-dollars, below 2⁵³ (exact in the doubles of Redis Lua scripts).
pub const MAX_BUDGET_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// A budget amount in USD: positive, at most [`MAX_BUDGET_AMOUNT`], at most ten
/// decimal places (the precision money is stored with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetAmount(Decimal);

impl BudgetAmount {
    pub fn parse(value: Decimal) -> Result<Self, Invalid> {
        if value <= Decimal::ZERO {
            return Err(Invalid::new("must be greater than 0"));
        }
        if value > MAX_BUDGET_AMOUNT {
            return Err(Invalid::new(format!("must be at most {MAX_BUDGET_AMOUNT}")));
        }
        // As written: "1.00000000000" has eleven places, like the document's pattern says.
        if value.scale() > MONEY_SCALE {
            return Err(Invalid::new(format!("must have at most {MONEY_SCALE} decimal places")));
        }
        Ok(Self(value.normalize()))
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

pub const MAX_THRESHOLDS: usize = 10;
pub const DEFAULT_THRESHOLDS: [u8; 3] = [50, 80, 100];

/// Alert thresholds in percent of the budget amount: each 1..=100, at most
/// [`MAX_THRESHOLDS`], kept sorted and without repeats. May be empty (no alerts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds(Vec<u8>);

impl Default for Thresholds {
    fn default() -> Self {
        Self(DEFAULT_THRESHOLDS.to_vec())
    }
}

impl Thresholds {
    /// Accepts the percentages in any order; repeats collapse into one.
    pub fn parse(values: &[i64]) -> Result<Self, Invalid> {
        if values.len() > MAX_THRESHOLDS {
            return Err(Invalid::new(format!("must hold at most {MAX_THRESHOLDS} thresholds")));
        }
        let mut percents = Vec::with_capacity(values.len());
        for &v in values {
            match u8::try_from(v) {
                Ok(p) if (1..=100).contains(&p) => percents.push(p),
                _ => return Err(Invalid::new(format!("{v} is not a percentage between 1 and 100"))),
            }
        }
        percents.sort_unstable();
        percents.dedup();
        Ok(Self(percents))
    }

    pub fn percents(&self) -> &[u8] {
        &self.0
    }
}

/// The thresholds (percent) whose level, `t %` of `amount`, `spent` has reached;
/// reaching a level exactly counts. Alerts are keyed by threshold and period, so
/// asking again after every change of spend reports each threshold once per period,
/// whichever instance asks and however the spend was split.
pub fn reached_thresholds(spent: Decimal, amount: Decimal, thresholds: &[u8]) -> Vec<u8> {
    thresholds
        .iter()
        .copied()
        .filter(|&t| spent >= amount * Decimal::from(t) / Decimal::ONE_HUNDRED)
        .collect()
}

/// Everything a budget is besides what it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSettings {
    pub amount: BudgetAmount,
    pub period: BudgetPeriod,
    pub thresholds: Thresholds,
    /// Deny calls at 100 % (`true`), or only alert (`false`).
    pub hard_limit: bool,
}

/// A partial change of a budget; what is left out stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetChanges {
    pub amount: Option<BudgetAmount>,
    pub period: Option<BudgetPeriod>,
    pub thresholds: Option<Thresholds>,
    pub hard_limit: Option<bool>,
}

pub const MAX_REQUESTS_PER_MINUTE: i64 = 10_000_000;
pub const MAX_TOKENS_PER_MINUTE: i64 = 10_000_000_000;

/// Requests and tokens (prompt + completion) per minute; at least one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub requests_per_minute: Option<i32>,
    pub tokens_per_minute: Option<i64>,
}

impl RateLimits {
    /// Each limit is checked on its own; the error names the field that broke a rule.
    pub fn parse(requests: Option<i64>, tokens: Option<i64>) -> Result<Self, (&'static str, Invalid)> {
        let bounded = |v: i64, max: i64| {
            if (1..=max).contains(&v) {
                Ok(v)
            } else {
                Err(Invalid::new(format!("must be between 1 and {max}")))
            }
        };
        let requests_per_minute = requests
            .map(|v| {
                bounded(v, MAX_REQUESTS_PER_MINUTE)
                    .and_then(|v| i32::try_from(v).map_err(|_| Invalid::new("too large")))
            })
            .transpose()
            .map_err(|e| ("requestsPerMinute", e))?;
        let tokens_per_minute = tokens
            .map(|v| bounded(v, MAX_TOKENS_PER_MINUTE))
            .transpose()
            .map_err(|e| ("tokensPerMinute", e))?;
        if requests_per_minute.is_none() && tokens_per_minute.is_none() {
            return Err((
                "requestsPerMinute",
                Invalid::new("set requestsPerMinute, tokensPerMinute or both (DELETE removes the limits)"),
            ));
        }
        Ok(Self {
            requests_per_minute,
            tokens_per_minute,
        })
    }
}

/// Whether a hard budget lets a call through, in micro-dollars (`domain::micros`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow {
        /// Headroom left once this call's estimate is counted.
        remaining: i64,
    },
    Deny {
        /// Headroom left before this call (0 when the budget is used up).
        remaining: i64,
    },
}

/// A hard budget of `amount` with `spent` recorded and `reserved` held for calls in
/// flight: a call estimated at `estimated` goes through only if spend, reservations
/// and the estimate together stay within the amount. Once spend and reservations
/// reach the amount, every call is denied, even one estimated at nothing.
pub fn evaluate(spent: i64, reserved: i64, estimated: i64, amount: i64) -> Verdict {
    let committed = spent.saturating_add(reserved.max(0));
    let headroom = amount.saturating_sub(committed).max(0);
    let after = committed.saturating_add(estimated.max(0));
    if committed < amount && after <= amount {
        Verdict::Allow {
            remaining: amount - after,
        }
    } else {
        Verdict::Deny { remaining: headroom }
    }
}

/// A reset of a scope's spend: what was spent before `at` no longer counts. Spend is
/// kept per UTC day, so the reset records what the scope had spent on `at`'s day up
/// to the reset, and subtracts it while that day is inside the budget's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendReset {
    pub at: DateTime<Utc>,
    pub day_cost: Decimal,
    pub day_micros: i64,
}

/// Which ledger days count towards a window, and what to take off their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub first_day: NaiveDate,
    pub minus_cost: Decimal,
    pub minus_micros: i64,
}

/// The ledger days of `window` that count, given the scope's latest reset. A reset
/// before the window changes nothing (the window starts after it anyway); a reset
/// inside it moves the start to the reset's day, minus what was spent that day
/// before the reset. The period may change after a reset: the rule depends only on
/// the reset instant, so it stays right.
pub fn counted(window: &Window, reset: Option<&SpendReset>) -> Counted {
    match reset {
        Some(r) if r.at >= window.start => Counted {
            first_day: r.at.date_naive(),
            minus_cost: r.day_cost,
            minus_micros: r.day_micros,
        },
        _ => Counted {
            first_day: window.first_day(),
            minus_cost: Decimal::ZERO,
            minus_micros: 0,
        },
    }
}

/// What is left of a budget: never negative.
pub fn remaining(amount: Decimal, spent: Decimal) -> Decimal {
    (amount - spent).max(Decimal::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    #[test]
    fn scopes_are_spelled_as_in_the_api() {
        assert_eq!(serde_json::to_value(BudgetScope::ApiKey).unwrap(), "apiKey");
        assert_eq!("apiKey".parse::<BudgetScope>().unwrap(), BudgetScope::ApiKey);
        assert_eq!(BudgetScope::Organization.as_str(), "organization");
        assert!("api_key".parse::<BudgetScope>().is_err());
        assert!(serde_json::from_value::<BudgetScope>(serde_json::json!("team")).is_err());
        assert_eq!(DefaultScope::Agent.scope(), BudgetScope::Agent);
    }

    #[test]
    fn amounts_are_positive_bounded_and_at_most_ten_places() {
        assert_eq!(BudgetAmount::parse(dec!(25.50)).unwrap().value(), dec!(25.5));
        assert!(BudgetAmount::parse(dec!(0)).is_err());
        assert!(BudgetAmount::parse(dec!(-1)).is_err());
        assert!(BudgetAmount::parse(dec!(1_000_000_000)).is_ok());
        assert!(BudgetAmount::parse(dec!(1_000_000_000.0000000001)).is_err());
        assert!(BudgetAmount::parse(dec!(0.0000000001)).is_ok());
        assert!(BudgetAmount::parse(dec!(0.00000000001)).is_err());
        // Places as written, as the API document's pattern counts them; the value is kept
        // without its trailing zeros.
        assert!(BudgetAmount::parse(dec!(1.000000000000)).is_err());
        assert_eq!(
            BudgetAmount::parse(dec!(1.0000000000)).unwrap().value().to_string(),
            "1"
        );
    }

    #[test]
    fn thresholds_are_percentages_kept_sorted_and_unique() {
        assert_eq!(Thresholds::default().percents(), [50, 80, 100]);
        assert_eq!(Thresholds::parse(&[100, 50, 50, 75]).unwrap().percents(), [50, 75, 100]);
        assert!(Thresholds::parse(&[]).unwrap().percents().is_empty());
        for bad in [[0], [101], [-5]] {
            assert!(Thresholds::parse(&bad).is_err(), "{bad:?}");
        }
        assert!(Thresholds::parse(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]).is_err());
        assert!(Thresholds::parse(&[10, 20, 30, 40, 50, 60, 70, 80, 90, 100]).is_ok());
    }

    #[test]
    fn a_threshold_is_reached_at_its_exact_level() {
        let t = Thresholds::default();
        let reached = |spent| reached_thresholds(spent, dec!(100), t.percents());
        assert_eq!(reached(dec!(49.99)), Vec::<u8>::new());
        assert_eq!(reached(dec!(50)), [50]);
        assert_eq!(reached(dec!(80.0000000001)), [50, 80]);
        assert_eq!(reached(dec!(500)), [50, 80, 100]);
        // Levels need not be whole cents.
        assert_eq!(reached_thresholds(dec!(0.1665), dec!(0.333), t.percents()), [50]);
        assert_eq!(
            reached_thresholds(dec!(0), dec!(0.0000000001), t.percents()),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn rate_limits_need_one_bounded_value() {
        assert_eq!(
            RateLimits::parse(Some(60), None).unwrap(),
            RateLimits {
                requests_per_minute: Some(60),
                tokens_per_minute: None
            }
        );
        assert_eq!(
            RateLimits::parse(None, Some(100_000)).unwrap().tokens_per_minute,
            Some(100_000)
        );
        assert_eq!(RateLimits::parse(Some(0), None).unwrap_err().0, "requestsPerMinute");
        assert_eq!(RateLimits::parse(Some(5), Some(-1)).unwrap_err().0, "tokensPerMinute");
        assert_eq!(
            RateLimits::parse(None, Some(MAX_TOKENS_PER_MINUTE + 1)).unwrap_err().0,
            "tokensPerMinute"
        );
        assert!(RateLimits::parse(Some(MAX_REQUESTS_PER_MINUTE), None).is_ok());
        assert!(RateLimits::parse(None, None).is_err());
    }

    #[test]
    fn a_hard_budget_denies_the_call_that_would_cross_it() {
        assert_eq!(evaluate(0, 0, 100, 100), Verdict::Allow { remaining: 0 });
        assert_eq!(evaluate(50, 20, 30, 100), Verdict::Allow { remaining: 0 });
        assert_eq!(evaluate(50, 20, 31, 100), Verdict::Deny { remaining: 30 });
        assert_eq!(evaluate(100, 0, 0, 100), Verdict::Deny { remaining: 0 });
        assert_eq!(evaluate(130, 0, 0, 100), Verdict::Deny { remaining: 0 });
        assert_eq!(evaluate(10, 0, 0, 100), Verdict::Allow { remaining: 90 });
    }

    #[test]
    fn a_reset_inside_the_window_moves_its_start() {
        let at = |d, h| Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap();
        let window = BudgetPeriod::Monthly.window(at(20, 12));
        let reset = SpendReset {
            at: at(15, 9),
            day_cost: dec!(1.5),
            day_micros: 1_500_000,
        };
        assert_eq!(
            counted(&window, Some(&reset)),
            Counted {
                first_day: reset.at.date_naive(),
                minus_cost: dec!(1.5),
                minus_micros: 1_500_000
            }
        );
        let next_month = BudgetPeriod::Monthly.window(Utc.with_ymd_and_hms(2026, 4, 2, 0, 0, 0).unwrap());
        assert_eq!(counted(&next_month, Some(&reset)).first_day, next_month.first_day());
        assert_eq!(counted(&next_month, Some(&reset)).minus_micros, 0);
        assert_eq!(counted(&window, None).first_day, window.first_day());
        assert_eq!(remaining(dec!(10), dec!(12)), dec!(0));
    }

    proptest! {
        /// However the spend is split into increments, asking after each one reports
        /// every threshold at or below the final spend, each first at the increment that
        /// reached it, and no other.
        #[test]
        fn every_threshold_is_reached_once(
            amount_cents in 1i64..1_000_000,
            increments in prop::collection::vec(0i64..50_000, 0..60),
            raw in prop::collection::vec(1i64..=100, 0..=10),
        ) {
            let amount = Decimal::new(amount_cents, 2);
            let thresholds = Thresholds::parse(&raw).unwrap();
            let mut spent = Decimal::ZERO;
            let mut reported: Vec<u8> = Vec::new();
            for inc in increments {
                let after = spent + Decimal::new(inc, 2);
                for t in reached_thresholds(after, amount, thresholds.percents()) {
                    if !reported.contains(&t) {
                        reported.push(t);
                    }
                }
                spent = after;
            }
            let expected: Vec<u8> = thresholds
                .percents()
                .iter()
                .copied()
                .filter(|&t| amount * Decimal::from(t) / Decimal::ONE_HUNDRED <= spent)
                .collect();
            let mut sorted = reported.clone();
            sorted.sort_unstable();
            prop_assert_eq!(&sorted, &expected);
            // Reported in the order spend reached them.
            prop_assert_eq!(reported, expected);
        }

        #[test]
        fn an_allowed_call_never_takes_spend_past_the_amount(
            spent in 0i64..1_000_000, reserved in 0i64..1_000_000, estimated in 0i64..1_000_000, amount in 1i64..2_000_000,
        ) {
            match evaluate(spent, reserved, estimated, amount) {
                Verdict::Allow { remaining } => {
                    prop_assert!(spent + reserved + estimated <= amount);
                    prop_assert!(spent + reserved < amount);
                    prop_assert_eq!(remaining, amount - spent - reserved - estimated);
                }
                Verdict::Deny { remaining } => {
                    prop_assert!(spent + reserved + estimated > amount || spent + reserved >= amount);
                    prop_assert_eq!(remaining, (amount - spent - reserved).max(0));
                }
            }
        }

        #[test]
        fn a_smaller_estimate_is_never_treated_worse(
            spent in 0i64..1_000, reserved in 0i64..1_000, estimated in 0i64..1_000, amount in 1i64..3_000,
        ) {
            let allows = |estimated| matches!(evaluate(spent, reserved, estimated, amount), Verdict::Allow { .. });
            prop_assert!(!allows(estimated) || allows(estimated / 2));
        }
    }
}
