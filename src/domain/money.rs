//! Money: `rust_decimal::Decimal` everywhere, rounded in exactly one place.

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places kept for every stored amount (`NUMERIC(…, 10)` in PostgreSQL).
/// Ten places keep a one-token charge of the cheapest model exact.
pub const MONEY_SCALE: u32 = 10;

/// Amounts of a single event must stay below this (`NUMERIC(20, 10)` holds ten
/// integer digits).
pub const MAX_EVENT_AMOUNT: Decimal = Decimal::from_parts(1_410_065_408, 2, 0, false, 0); // 10^10

/// The one rounding rule: to [`MONEY_SCALE`] places, halves away from zero.
pub fn round_money(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointAwayFromZero)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn the_event_amount_bound_is_ten_billion() {
        assert_eq!(MAX_EVENT_AMOUNT, dec!(10_000_000_000));
    }

    #[test]
    fn rounds_half_away_from_zero_at_ten_places() {
        assert_eq!(round_money(dec!(0.00000000005)), dec!(0.0000000001));
        assert_eq!(round_money(dec!(0.00000000004999)), dec!(0));
        assert_eq!(round_money(dec!(1.23)), dec!(1.23));
    }
}
