//! Organization plans and the data retention each one grants.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Invalid;

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
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Plan {
    Free,
    Pro,
    Enterprise,
}

pub const FREE_RETENTION_DAYS: i32 = 3;
pub const PRO_RETENTION_DAYS: i32 = 90;
pub const MAX_RETENTION_DAYS: i32 = 365;

impl Plan {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The retention an organization on this plan gets. Free and pro are fixed;
    /// enterprise takes a negotiated value in `1..=365` (365 when none is given).
    pub fn retention_days(self, requested: Option<i32>) -> Result<i32, Invalid> {
        match (self, requested) {
            (Plan::Free, None) => Ok(FREE_RETENTION_DAYS),
            (Plan::Pro, None) => Ok(PRO_RETENTION_DAYS),
            (Plan::Free | Plan::Pro, Some(_)) => Err(Invalid::new(format!(
                "retention is fixed on the {} plan; only enterprise takes a custom value",
                self.as_str()
            ))),
            (Plan::Enterprise, None) => Ok(MAX_RETENTION_DAYS),
            (Plan::Enterprise, Some(days)) if (1..=MAX_RETENTION_DAYS).contains(&days) => Ok(days),
            (Plan::Enterprise, Some(_)) => Err(Invalid::new(format!("must be between 1 and {MAX_RETENTION_DAYS}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_plans_have_fixed_retention() {
        assert_eq!(Plan::Free.retention_days(None), Ok(3));
        assert_eq!(Plan::Pro.retention_days(None), Ok(90));
        assert!(Plan::Pro.retention_days(Some(30)).is_err());
    }

    #[test]
    fn enterprise_retention_is_bounded() {
        assert_eq!(Plan::Enterprise.retention_days(None), Ok(365));
        assert_eq!(Plan::Enterprise.retention_days(Some(1)), Ok(1));
        assert_eq!(Plan::Enterprise.retention_days(Some(365)), Ok(365));
        assert!(Plan::Enterprise.retention_days(Some(0)).is_err());
        assert!(Plan::Enterprise.retention_days(Some(366)).is_err());
    }

    #[test]
    fn database_spelling_round_trips() {
        for plan in [Plan::Free, Plan::Pro, Plan::Enterprise] {
            assert_eq!(plan.as_str().parse::<Plan>().unwrap(), plan);
        }
    }
}
