//! Which discount applies to a call.
//!
//! Precedence (the order LLM Gateway uses): organization+provider+model, then
//! organization+provider, then organization+model, then the same three global
//! scopes. The first scope with a discount valid at the event time wins; discounts
//! never stack. Within one scope, the discount that started last wins.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::pricing::same_name;

#[derive(Debug, Clone, PartialEq)]
pub struct DiscountRule {
    pub id: Uuid,
    /// `None`: global.
    pub org_id: Option<Uuid>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub percent: Decimal,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
}

/// What a call is matched on. A model matches a discount by either of its names:
/// the catalog id or the provider's own name, whatever their case.
pub struct Subject<'a> {
    pub org_id: Uuid,
    pub provider: &'a str,
    pub model_names: &'a [&'a str],
    pub at: DateTime<Utc>,
}

impl DiscountRule {
    pub fn is_valid_at(&self, at: DateTime<Utc>) -> bool {
        self.valid_from <= at && self.valid_until.is_none_or(|until| at < until)
    }

    /// 0 is the most specific scope, 5 the least; `None` if the rule does not match.
    fn rank(&self, subject: &Subject<'_>) -> Option<u8> {
        let org_rank = match self.org_id {
            Some(org) if org == subject.org_id => 0,
            Some(_) => return None,
            None => 3,
        };
        let provider_matches = self.provider.as_deref().map(|p| same_name(p, subject.provider));
        let model_matches = self
            .model
            .as_deref()
            .map(|m| subject.model_names.iter().any(|name| same_name(name, m)));
        let scope_rank = match (provider_matches, model_matches) {
            (Some(true), Some(true)) => 0,
            (Some(true), None) => 1,
            (None, Some(true)) => 2,
            _ => return None,
        };
        Some(org_rank + scope_rank)
    }
}

pub fn applicable<'r>(rules: &'r [DiscountRule], subject: &Subject<'_>) -> Option<&'r DiscountRule> {
    rules
        .iter()
        .filter(|rule| rule.is_valid_at(subject.at))
        .filter_map(|rule| rule.rank(subject).map(|rank| (rank, rule)))
        .min_by(|(rank_a, a), (rank_b, b)| {
            rank_a
                .cmp(rank_b)
                .then(b.valid_from.cmp(&a.valid_from))
                .then(b.id.cmp(&a.id))
        })
        .map(|(_, rule)| rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).unwrap()
    }

    const ORG: Uuid = Uuid::from_u128(1);
    const OTHER_ORG: Uuid = Uuid::from_u128(2);

    fn rule(org: Option<Uuid>, provider: Option<&str>, model: Option<&str>, percent: Decimal) -> DiscountRule {
        DiscountRule {
            id: Uuid::new_v4(),
            org_id: org,
            provider: provider.map(Into::into),
            model: model.map(Into::into),
            percent,
            valid_from: at(1),
            valid_until: None,
        }
    }

    fn pick(rules: &[DiscountRule]) -> Option<Decimal> {
        let names = ["gpt-4o", "gpt-4o-2024-08-06"];
        let subject = Subject {
            org_id: ORG,
            provider: "openai",
            model_names: &names,
            at: at(10),
        };
        applicable(rules, &subject).map(|r| r.percent)
    }

    /// All six scopes present; removing the winner each time walks down the order.
    #[test]
    fn precedence_walks_down_the_six_scopes() {
        let mut rules = vec![
            rule(None, None, Some("gpt-4o"), dec!(6)),
            rule(None, Some("openai"), None, dec!(5)),
            rule(None, Some("openai"), Some("gpt-4o"), dec!(4)),
            rule(Some(ORG), None, Some("gpt-4o"), dec!(3)),
            rule(Some(ORG), Some("openai"), None, dec!(2)),
            rule(Some(ORG), Some("openai"), Some("gpt-4o"), dec!(1)),
        ];
        for expected in [1, 2, 3, 4, 5, 6] {
            assert_eq!(pick(&rules), Some(Decimal::from(expected)));
            rules.pop();
        }
        assert_eq!(pick(&rules), None);
    }

    #[test]
    fn model_matches_by_either_name() {
        assert_eq!(
            pick(&[rule(None, None, Some("gpt-4o-2024-08-06"), dec!(7))]),
            Some(dec!(7))
        );
        assert_eq!(pick(&[rule(None, None, Some("gpt-4o-mini"), dec!(7))]), None);
        assert_eq!(
            pick(&[rule(None, Some("openai"), Some("GPT-4o-2024-08-06"), dec!(7))]),
            Some(dec!(7)),
            "names match whatever their case"
        );
    }

    #[test]
    fn other_organizations_and_providers_do_not_match() {
        assert_eq!(pick(&[rule(Some(OTHER_ORG), Some("openai"), None, dec!(9))]), None);
        assert_eq!(pick(&[rule(None, Some("anthropic"), None, dec!(9))]), None);
        // Provider and model must both match when both are set.
        assert_eq!(pick(&[rule(None, Some("anthropic"), Some("gpt-4o"), dec!(9))]), None);
    }

    #[test]
    fn expired_or_future_discounts_are_skipped_for_the_next_scope() {
        let mut expired = rule(Some(ORG), Some("openai"), Some("gpt-4o"), dec!(50));
        expired.valid_until = Some(at(5));
        let mut future = rule(Some(ORG), Some("openai"), None, dec!(40));
        future.valid_from = at(20);
        let global = rule(None, Some("openai"), None, dec!(10));
        assert_eq!(pick(&[expired, future, global]), Some(dec!(10)));
    }

    #[test]
    fn the_end_instant_is_exclusive() {
        let mut r = rule(None, Some("openai"), None, dec!(10));
        r.valid_until = Some(at(10));
        assert_eq!(pick(&[r]), None);
    }

    #[test]
    fn within_a_scope_the_latest_start_wins_and_nothing_stacks() {
        let older = rule(None, Some("openai"), None, dec!(10));
        let mut newer = rule(None, Some("openai"), None, dec!(20));
        newer.valid_from = at(2);
        assert_eq!(pick(&[older, newer]), Some(dec!(20)));
    }
}
