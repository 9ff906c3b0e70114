//! Stream tickets: a browser's `EventSource` cannot send an `Authorization` header, so
//! a signed-in client trades its JWT for a ticket (`POST …/stream-tickets`) and puts
//! that in the stream's URL. A ticket is good for one stream of one organization, as
//! one person, within [`TICKET_TTL`], once: what leaks through a URL (logs, history)
//! is worthless by the time anyone reads it. Redis holds only its SHA-256.

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::{LiveHub, RETRY_AFTER_SECS};
use crate::{
    domain::live::{looks_like_ticket, new_ticket, ticket_digest, TicketGrant},
    error::{AppError, AppResult},
};

pub const TICKET_TTL: Duration = Duration::from_secs(60);

/// A ticket just issued: the secret (shown once) and when it stops working.
pub struct Issued {
    pub secret: String,
    pub expires_at: DateTime<Utc>,
}

fn redis_failed(e: impl Into<anyhow::Error>) -> AppError {
    AppError::unavailable(e).retry_after(RETRY_AFTER_SECS)
}

fn timed_out() -> AppError {
    redis_failed(anyhow::anyhow!("Redis did not answer in time"))
}

impl LiveHub {
    pub async fn issue_ticket(&self, grant: TicketGrant) -> AppResult<Issued> {
        let (mut conn, keys, timeout) = self.redis();
        let secret = new_ticket();
        let expires_at = Utc::now() + TICKET_TTL;
        tokio::time::timeout(
            timeout,
            conn.set_ex::<_, _, ()>(
                keys.ticket(&ticket_digest(&secret)),
                grant.encode(),
                TICKET_TTL.as_secs(),
            ),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(redis_failed)?;
        Ok(Issued { secret, expires_at })
    }

    /// Uses up a ticket (`GETDEL`, Redis 6.2 or later: reading and deleting in one
    /// step, so two streams can never share one). 401 when it is malformed, unknown,
    /// used, expired, or for another organization.
    pub async fn redeem_ticket(&self, secret: &str, org_id: uuid::Uuid) -> AppResult<TicketGrant> {
        let refused = || AppError::unauthorized("the stream ticket is invalid, used or expired");
        if !looks_like_ticket(secret) {
            return Err(refused());
        }
        let (mut conn, keys, timeout) = self.redis();
        let stored: Option<String> = tokio::time::timeout(timeout, conn.get_del(keys.ticket(&ticket_digest(secret))))
            .await
            .map_err(|_| timed_out())?
            .map_err(redis_failed)?;
        let grant = stored.as_deref().and_then(TicketGrant::decode).ok_or_else(refused)?;
        if grant.org_id != org_id {
            return Err(refused());
        }
        Ok(grant)
    }
}
