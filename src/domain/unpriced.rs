//! An organization's policy for calls to models without a price.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the authorize check does with a call naming a provider and model that have no
/// price in force. Usage of such a model is recorded either way (at zero cost, flagged
/// `unpriced`): by the time its event arrives the call has happened.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum UnpricedModels {
    /// Calls proceed; their usage costs nothing and is flagged `unpriced`.
    #[default]
    Allow,
    /// Calls are denied with the reason `unpriced_model`.
    Deny,
}

impl UnpricedModels {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether a call is denied, given whether its model has a price. A call that
    /// names no model cannot be known to be unpriced, so only `Some(false)` counts.
    pub fn denies(self, priced: Option<bool>) -> bool {
        self == Self::Deny && priced == Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deny_refuses_and_only_a_known_unpriced_model() {
        assert!(UnpricedModels::Deny.denies(Some(false)));
        assert!(!UnpricedModels::Deny.denies(Some(true)));
        assert!(!UnpricedModels::Deny.denies(None));
        assert!(!UnpricedModels::Allow.denies(Some(false)));
        assert_eq!(UnpricedModels::default(), UnpricedModels::Allow);
    }

    #[test]
    fn stored_names_round_trip() {
        for policy in [UnpricedModels::Allow, UnpricedModels::Deny] {
            assert_eq!(policy.as_str().parse::<UnpricedModels>(), Ok(policy));
        }
    }
}
