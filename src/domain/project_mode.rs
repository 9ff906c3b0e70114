//! Whose provider keys pay for a project's calls.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `api-keys`: the tenant's own provider keys paid; `credits`: the platform's credits
/// paid; `hybrid`: either, decided per call.
#[derive(
    Debug,
    Clone,
    Copy,
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
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum ProjectMode {
    ApiKeys,
    Credits,
    Hybrid,
}

impl ProjectMode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelled_as_in_the_api() {
        assert_eq!(ProjectMode::ApiKeys.as_str(), "api-keys");
        assert_eq!("hybrid".parse::<ProjectMode>().unwrap(), ProjectMode::Hybrid);
        assert_eq!(serde_json::to_value(ProjectMode::ApiKeys).unwrap(), "api-keys");
    }
}
