//! API keys of a project. Secrets are never stored; see `domain::api_key`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::{access::OrgAccess, projects, schema::api_keys, DbConn};
use crate::{
    domain::{
        api_key::{self, KeyStatus},
        identity::{KeyIdentity, KeyRecord},
        names::Name,
        role::Access,
    },
    error::{AppError, AppResult},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKey {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub replaced_by: Option<Uuid>,
}

/// A key as just created: the row plus the secret, which exists only in this value.
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: String,
}

pub struct NewKey {
    pub name: Name,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn create(
    conn: &mut DbConn,
    access: &OrgAccess,
    project_id: Uuid,
    new: NewKey,
    pepper: &str,
) -> AppResult<CreatedKey> {
    access.require(Access::Manage)?;
    // 404 for a project of another organization, before anything is written.
    projects::get(conn, access, project_id).await?;
    insert(conn, access, project_id, &new, pepper).await
}

async fn insert(
    conn: &mut DbConn,
    access: &OrgAccess,
    project_id: Uuid,
    new: &NewKey,
    pepper: &str,
) -> AppResult<CreatedKey> {
    let generated = api_key::generate();
    let key = diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(Uuid::now_v7()),
            api_keys::org_id.eq(access.org_id()),
            api_keys::project_id.eq(project_id),
            api_keys::name.eq(new.name.as_str()),
            api_keys::prefix.eq(&generated.visible_prefix),
            api_keys::secret_hash.eq(api_key::keyed_hash(pepper, &generated.secret)),
            api_keys::created_by.eq(access.user_id()),
            api_keys::expires_at.eq(new.expires_at),
        ))
        .returning(ApiKey::as_returning())
        .get_result(conn)
        .await?;
    Ok(CreatedKey {
        key,
        secret: generated.secret,
    })
}

pub async fn list(conn: &mut DbConn, access: &OrgAccess, project_id: Uuid) -> AppResult<Vec<ApiKey>> {
    projects::get(conn, access, project_id).await?;
    Ok(api_keys::table
        .filter(api_keys::org_id.eq(access.org_id()))
        .filter(api_keys::project_id.eq(project_id))
        .order(api_keys::created_at.desc())
        .select(ApiKey::as_select())
        .load(conn)
        .await?)
}

pub async fn get(conn: &mut DbConn, access: &OrgAccess, project_id: Uuid, key_id: Uuid) -> AppResult<ApiKey> {
    api_keys::table
        .filter(api_keys::org_id.eq(access.org_id()))
        .filter(api_keys::project_id.eq(project_id))
        .filter(api_keys::id.eq(key_id))
        .select(ApiKey::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("API key"))
}

/// Revokes a key now (idempotent: an already revoked key keeps its first revocation
/// time). Returns the key and its secret hash, so caches can drop it.
pub async fn revoke(
    conn: &mut DbConn,
    access: &OrgAccess,
    project_id: Uuid,
    key_id: Uuid,
) -> AppResult<(ApiKey, Vec<u8>)> {
    access.require(Access::Manage)?;
    let now = Utc::now();
    conn.transaction(async |conn| {
        let (key, hash) = lock(conn, access, project_id, key_id).await?;
        let revoked_at = match key.revoked_at {
            Some(at) if at <= now => at,
            _ => now,
        };
        let key = set_revoked(conn, key.id, revoked_at, key.replaced_by).await?;
        Ok((key, hash))
    })
    .await
}

/// Replaces a key with a new secret. The old key stays valid for `grace` (it is
/// revoked at `now + grace`), so clients can switch without downtime.
pub async fn rotate(
    conn: &mut DbConn,
    access: &OrgAccess,
    project_id: Uuid,
    key_id: Uuid,
    grace: chrono::Duration,
    pepper: &str,
) -> AppResult<(CreatedKey, Vec<u8>)> {
    access.require(Access::Manage)?;
    let now = Utc::now();
    conn.transaction(async |conn| {
        let (old, old_hash) = lock(conn, access, project_id, key_id).await?;
        if old.revoked_at.is_some() {
            return Err(AppError::conflict("a revoked or already rotated key cannot be rotated"));
        }
        if KeyStatus::at(None, old.expires_at, now) == KeyStatus::Expired {
            return Err(AppError::conflict("an expired key cannot be rotated"));
        }
        let name = Name::parse(&old.name).map_err(|e| AppError::internal(anyhow::anyhow!("stored key name: {e}")))?;
        let new = NewKey {
            name,
            expires_at: old.expires_at,
        };
        let created = insert(conn, access, project_id, &new, pepper).await?;
        set_revoked(conn, old.id, now + grace, Some(created.key.id)).await?;
        Ok((created, old_hash))
    })
    .await
}

async fn lock(conn: &mut DbConn, access: &OrgAccess, project_id: Uuid, key_id: Uuid) -> AppResult<(ApiKey, Vec<u8>)> {
    api_keys::table
        .filter(api_keys::org_id.eq(access.org_id()))
        .filter(api_keys::project_id.eq(project_id))
        .filter(api_keys::id.eq(key_id))
        .select((ApiKey::as_select(), api_keys::secret_hash))
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("API key"))
}

async fn set_revoked(
    conn: &mut DbConn,
    key_id: Uuid,
    revoked_at: DateTime<Utc>,
    replaced_by: Option<Uuid>,
) -> AppResult<ApiKey> {
    Ok(diesel::update(api_keys::table.find(key_id))
        .set((
            api_keys::revoked_at.eq(revoked_at),
            api_keys::replaced_by.eq(replaced_by),
        ))
        .returning(ApiKey::as_returning())
        .get_result(conn)
        .await?)
}

/// Gateway path: the key with this secret hash, whatever its state.
pub async fn find_by_hash(conn: &mut DbConn, secret_hash: &[u8]) -> AppResult<Option<KeyRecord>> {
    type Row = (Uuid, Uuid, Uuid, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let row: Option<Row> = api_keys::table
        .filter(api_keys::secret_hash.eq(secret_hash))
        .select((
            api_keys::id,
            api_keys::project_id,
            api_keys::org_id,
            api_keys::expires_at,
            api_keys::revoked_at,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(
        row.map(|(key_id, project_id, org_id, expires_at, revoked_at)| KeyRecord {
            identity: KeyIdentity {
                key_id,
                project_id,
                org_id,
            },
            expires_at,
            revoked_at,
        }),
    )
}

pub async fn touch_last_used(conn: &mut DbConn, key_id: Uuid) -> AppResult<()> {
    diesel::update(api_keys::table.find(key_id))
        .set(api_keys::last_used_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(())
}
