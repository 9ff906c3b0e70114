//! Membership roles and what each may do inside its organization.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
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
pub enum Role {
    // Ordered from least to most privileged.
    Viewer,
    Admin,
    Owner,
}

/// What an operation needs from the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read anything in the organization.
    Read,
    /// Change projects, keys, settings and non-owner members.
    Manage,
    /// Grant or take away ownership.
    Own,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn allows(self, access: Access) -> bool {
        match access {
            Access::Read => true,
            Access::Manage => self >= Role::Admin,
            Access::Own => self == Role::Owner,
        }
    }

    /// The access needed to give someone this role or take it from them: only an
    /// owner makes or unmakes owners.
    pub fn access_to_assign(self) -> Access {
        if self == Role::Owner {
            Access::Own
        } else {
            Access::Manage
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_only_read() {
        assert!(Role::Viewer.allows(Access::Read));
        assert!(!Role::Viewer.allows(Access::Manage));
        assert!(!Role::Viewer.allows(Access::Own));
    }

    #[test]
    fn admins_manage_but_do_not_own() {
        assert!(Role::Admin.allows(Access::Manage));
        assert!(!Role::Admin.allows(Access::Own));
        assert!(Role::Owner.allows(Access::Own));
    }

    #[test]
    fn only_owners_assign_ownership() {
        assert_eq!(Role::Owner.access_to_assign(), Access::Own);
        assert_eq!(Role::Admin.access_to_assign(), Access::Manage);
    }
}
