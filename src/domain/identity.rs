//! Who is acting: a signed-in person or a project API key. Shared vocabulary of the
//! auth, store and ingest layers, so none of them imports another for it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// A signed-in person, as established from a verified token and a fresh user row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub is_operator: bool,
    /// The person proved their email address. Until then they act only on the
    /// organizations they created (`store::access::authorize`).
    pub email_verified: bool,
}

impl Caller {
    /// Platform-level operations (plans, price catalog, discounts) are for operators.
    pub fn require_operator(&self) -> AppResult<()> {
        if self.is_operator {
            Ok(())
        } else {
            Err(AppError::forbidden("this operation is reserved for platform operators"))
        }
    }
}

/// The project an API key belongs to, resolved on each gateway call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyIdentity {
    pub key_id: Uuid,
    pub project_id: Uuid,
    pub org_id: Uuid,
}

/// What the cache keeps about a key: enough to accept or refuse it without the database.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub identity: KeyIdentity,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}
