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
