//! Path parameters shared by the tenant-scoped routes. A value that is not a UUID
//! is rejected with `invalid_path_parameter` before any handler runs.

use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct OrgPath {
    pub org_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct MemberPath {
    pub org_id: Uuid,
    pub user_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct ProjectPath {
    pub org_id: Uuid,
    pub project_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct KeyPath {
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub key_id: Uuid,
}

/// A budget or rate limit's scope: `scopeId` is the id of the customer, agent, API
/// key or project, or the organization's own id for `organization`.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct ScopePath {
    pub org_id: Uuid,
    pub scope: crate::domain::budget::BudgetScope,
    pub scope_id: Uuid,
}

impl ScopePath {
    pub fn target(&self) -> crate::store::scopes::ScopeTarget {
        crate::store::scopes::ScopeTarget {
            scope: self.scope,
            id: self.scope_id,
        }
    }
}

/// Whose defaults: `customer` or `agent`.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct DefaultsPath {
    pub org_id: Uuid,
    pub kind: crate::domain::budget::DefaultScope,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct CustomerPath {
    pub org_id: Uuid,
    /// The customer's id (`id` in listings), not the `user` string of events.
    pub customer_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct AgentPath {
    pub org_id: Uuid,
    /// The agent's id (`id` in listings), not the `agentId` string of events.
    pub agent_id: Uuid,
}
