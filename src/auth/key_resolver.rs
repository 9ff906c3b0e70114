//! Resolves a presented API key to its project and organization, on every gateway call.
//!
//! The hot path is: shape check, one HMAC, one in-memory cache hit. A miss costs one
//! indexed lookup on `api_keys.secret_hash`. Revocation on this instance takes effect
//! at once (the entry is dropped); on other instances within the cache TTL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::future::Cache;
use uuid::Uuid;

use crate::{
    domain::{
        api_key::{self, KeyStatus},
        identity::{KeyIdentity, KeyRecord},
    },
    error::{AppError, AppResult, ErrorCode},
    store::{self, DbPool},
};

/// How often `last_used_at` is written for one key, at most.
const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct ApiKeyResolver {
    pool: DbPool,
    pepper: String,
    /// secret hash → record (`None`: no such key, cached to blunt guessing).
    cache: Cache<Vec<u8>, Option<KeyRecord>>,
    recently_touched: Cache<Uuid, ()>,
}

impl ApiKeyResolver {
    pub fn new(pool: DbPool, pepper: String, ttl: Duration) -> Self {
        Self {
            pool,
            pepper,
            cache: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            recently_touched: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LAST_USED_RESOLUTION)
                .build(),
        }
    }

    pub fn hash(&self, secret: &str) -> Vec<u8> {
        api_key::keyed_hash(&self.pepper, secret)
    }

    pub async fn resolve(&self, secret: &str) -> AppResult<KeyIdentity> {
        let record = self.resolve_record(secret).await?;
        check_usable(&record, Utc::now())?;
        self.touch(record.identity.key_id).await;
        Ok(record.identity)
    }

    /// The key behind `secret` whatever its state (the authorize check answers a
    /// revoked or expired key with a decision rather than a 401). Unknown keys are 401.
    pub async fn resolve_record(&self, secret: &str) -> AppResult<KeyRecord> {
        if !api_key::looks_like_key(secret) {
            return Err(invalid_key());
        }
        let hash = self.hash(secret);
        let pool = self.pool.clone();
        let lookup_hash = hash.clone();
        let record = self
            .cache
            .try_get_with(hash, async move {
                let mut conn = pool.get().await?;
                store::api_keys::find_by_hash(&mut conn, &lookup_hash).await
            })
            .await
            .map_err(|e| AppError::unavailable(anyhow::anyhow!("api key lookup: {e}")))?;
        record.ok_or_else(invalid_key)
    }

    /// Drops a key from this instance's cache (after revoke or rotate).
    pub async fn forget(&self, secret_hash: &[u8]) {
        self.cache.invalidate(secret_hash).await;
    }

    /// Records use at most once per key per minute, off the request path.
    pub async fn touch(&self, key_id: Uuid) {
        if self.recently_touched.contains_key(&key_id) {
            return;
        }
        self.recently_touched.insert(key_id, ()).await;
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let result = async {
                let mut conn = pool.get().await?;
                store::api_keys::touch_last_used(&mut conn, key_id).await
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(%key_id, error = %e, "could not record api key use");
            }
        });
    }
}

fn invalid_key() -> AppError {
    AppError::new(ErrorCode::InvalidApiKey, "the API key is invalid")
}

/// Whether a key may be used at `now`.
pub fn check_usable(record: &KeyRecord, now: DateTime<Utc>) -> AppResult<()> {
    match KeyStatus::at(record.revoked_at, record.expires_at, now) {
        KeyStatus::Active => Ok(()),
        KeyStatus::Revoked => Err(AppError::new(ErrorCode::ApiKeyRevoked, "the API key has been revoked")),
        KeyStatus::Expired => Err(AppError::new(ErrorCode::ApiKeyExpired, "the API key has expired")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as ChronoDuration;

    fn record(expires_at: Option<DateTime<Utc>>, revoked_at: Option<DateTime<Utc>>) -> KeyRecord {
        let id = Uuid::new_v4();
        KeyRecord {
            identity: KeyIdentity {
                key_id: id,
                project_id: id,
                org_id: id,
            },
            expires_at,
            revoked_at,
        }
    }

    #[test]
    fn usable_until_expiry_or_revocation() {
        let now = Utc::now();
        let hour = ChronoDuration::hours(1);
        assert!(check_usable(&record(None, None), now).is_ok());
        assert!(check_usable(&record(Some(now + hour), None), now).is_ok());
        assert_eq!(
            check_usable(&record(Some(now - hour), None), now).unwrap_err().code(),
            ErrorCode::ApiKeyExpired
        );
        assert_eq!(
            check_usable(&record(None, Some(now)), now).unwrap_err().code(),
            ErrorCode::ApiKeyRevoked
        );
        // A rotated key keeps working until its grace period ends.
        assert!(check_usable(&record(None, Some(now + hour)), now).is_ok());
    }
}
