//! Minor units for counters: whole micro-dollars (1 USD = 1,000,000 µUSD) in an `i64`.
//!
//! Money is a `Decimal` with ten places everywhere it is stored; counters (Redis,
//! `spend_ledger.cost_micros`) need integers that add up exactly and atomically. Each
//! event's cost is converted on its own and rounded **up** to the next micro-dollar,
//! so a counter never under-counts: it over-counts by less than 1 µUSD per event
//! (under $0.001 per thousand events, under $1 per million). The sum of the rounded
//! event costs is stored in the ledger, so counters rebuilt from PostgreSQL come back
//! to exactly the same integer.
//!
//! Range: `i64` holds ±9.2·10¹² USD; amounts up to [`MAX_EXACT_MICROS`] (about
//! 9·10⁹ USD) also stay exact in the doubles Lua scripts compute with.

use rust_decimal::{prelude::ToPrimitive, Decimal, RoundingStrategy};

pub const MICROS_PER_USD: i64 = 1_000_000;

/// 2⁵³: every integer up to this is exact as an IEEE double (Lua numbers in Redis).
pub const MAX_EXACT_MICROS: i64 = 9_007_199_254_740_992;

/// The amount in micro-dollars, rounded up (towards +∞); `None` if it does not fit.
pub fn to_micros(amount: Decimal) -> Option<i64> {
    amount
        .checked_mul(Decimal::from(MICROS_PER_USD))?
        .round_dp_with_strategy(0, RoundingStrategy::ToPositiveInfinity)
        .to_i64()
}

/// The exact amount of a number of micro-dollars.
pub fn from_micros(micros: i64) -> Decimal {
    Decimal::new(micros, 6).normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    #[test]
    fn rounds_up_to_the_next_micro_dollar() {
        assert_eq!(to_micros(dec!(0)), Some(0));
        assert_eq!(to_micros(dec!(0.0000000001)), Some(1));
        assert_eq!(to_micros(dec!(0.000001)), Some(1));
        assert_eq!(to_micros(dec!(0.0000010001)), Some(2));
        assert_eq!(to_micros(dec!(0.00756)), Some(7_560));
        assert_eq!(to_micros(dec!(12.5)), Some(12_500_000));
        assert_eq!(from_micros(7_560), dec!(0.00756));
        assert_eq!(from_micros(1), dec!(0.000001));
    }

    #[test]
    fn out_of_range_amounts_do_not_convert() {
        assert_eq!(to_micros(Decimal::MAX), None);
        assert_eq!(to_micros(dec!(9_300_000_000_000)), None);
        assert!(to_micros(dec!(9_000_000_000_000)).is_some());
    }

    fn money() -> impl Strategy<Value = Decimal> {
        // Non-negative amounts with up to 10 places, below ten billion dollars.
        (0i64..10_000_000_000, 0i64..10_000_000_000, 0u32..=10)
            .prop_map(|(dollars, fraction, scale)| Decimal::from(dollars) + Decimal::new(fraction, 10).round_dp(scale))
    }

    proptest! {
        #[test]
        fn converting_never_loses_money(x in money()) {
            let micros = to_micros(x).unwrap();
            prop_assert!(from_micros(micros) >= x);
        }

        #[test]
        fn converting_adds_less_than_one_micro_dollar(x in money()) {
            let micros = to_micros(x).unwrap();
            let excess = Decimal::from(micros) - x * Decimal::from(MICROS_PER_USD);
            prop_assert!(excess >= Decimal::ZERO && excess < Decimal::ONE);
        }

        #[test]
        fn whole_micro_dollars_round_trip(m in 0i64..MAX_EXACT_MICROS) {
            prop_assert_eq!(to_micros(from_micros(m)), Some(m));
        }
    }
}
