//! Money: `rust_decimal::Decimal` everywhere, rounded in exactly one place.

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places kept for every stored amount (`NUMERIC(…, 10)` in PostgreSQL).
/// Ten places keep a one-token charge of the cheapest model exact.
pub const MONEY_SCALE: u32 = 10;

/// The one rounding rule: to [`MONEY_SCALE`] places, halves away from zero.
pub fn round_money(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointAwayFromZero)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn rounds_half_away_from_zero_at_ten_places() {
        assert_eq!(round_money(dec!(0.00000000005)), dec!(0.0000000001));
        assert_eq!(round_money(dec!(0.00000000004999)), dec!(0));
        assert_eq!(round_money(dec!(1.23)), dec!(1.23));
    }
}
