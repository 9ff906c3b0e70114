//! Login throttling across instances: failure counts and lock-outs in Redis, the
//! rules in `domain::login_throttle`.
//!
//! While Redis is unreachable, logins are not throttled (a warning is logged): people
//! keep signing in, and argon2 still makes each guess cost the guesser. The counts are
//! updated by separate commands, not atomically: two instances racing may let a
//! guess or two more through, which is harmless for a limit of this kind.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::{
    counters::keys::LoginKeys,
    domain::login_throttle::{self, ThrottlePolicy, ThrottleReading, ThrottleVerdict},
    error::{AppError, AppResult, ErrorCode},
};

/// One login attempt as throttling sees it: which account, from where.
#[derive(Debug, Clone)]
pub struct Attempt {
    account: String,
    address: String,
}

impl Attempt {
    /// `email` as typed (normalized here, so `Ada@X` and `ada@x` count together).
    pub fn new(email: &str, ip: std::net::IpAddr) -> Self {
        Self {
            account: login_throttle::account_key(&email.trim().to_lowercase()),
            address: login_throttle::address_key(ip),
        }
    }
}

#[derive(Clone)]
pub struct LoginThrottle {
    redis: ConnectionManager,
    keys: LoginKeys,
    policy: ThrottlePolicy,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A PTTL answer as a duration: none for a missing key or one without expiry.
fn ttl(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().filter(|&ms| ms > 0).map(Duration::from_millis)
}

/// Adds one to a fixed-window counter: the window starts with the first count (SET NX
/// with the expiry; INCR keeps it).
fn count_in_window(pipe: &mut redis::Pipeline, key: String, window_ms: u64) {
    let start = redis::SetOptions::default()
        .conditional_set(redis::ExistenceCheck::NX)
        .with_expiration(redis::SetExpiry::PX(window_ms));
    pipe.set_options(&key, 0, start).ignore().incr(&key, 1).ignore();
}

impl LoginThrottle {
    pub fn new(redis: ConnectionManager, prefix: &str, policy: ThrottlePolicy) -> Self {
        Self {
            redis,
            keys: LoginKeys::new(prefix),
            policy,
        }
    }

    /// Refuses the attempt with 429 and `Retry-After` while a limit applies.
    pub async fn check(&self, attempt: &Attempt) -> AppResult<()> {
        let reading = match self.read(attempt).await {
            Ok(reading) => reading,
            Err(e) => {
                tracing::warn!(error = %e, "login throttling skipped: Redis is unavailable");
                return Ok(());
            }
        };
        match login_throttle::decide(&self.policy, &reading) {
            ThrottleVerdict::Allow => Ok(()),
            ThrottleVerdict::Wait(wait) => Err(AppError::new(
                ErrorCode::TooManyAttempts,
                "too many failed sign-in attempts; try again later",
            )
            .retry_after(login_throttle::retry_after_secs(wait))),
        }
    }

    async fn read(&self, attempt: &Attempt) -> redis::RedisResult<ThrottleReading> {
        let (acct, addr) = (&attempt.account, &attempt.address);
        let mut conn = self.redis.clone();
        let (lock_ttl, account_failures, account_ttl, address_failures, address_ttl, known): (
            i64,
            Option<u64>,
            i64,
            Option<u64>,
            i64,
            bool,
        ) = redis::pipe()
            .pttl(self.keys.pair_lock(acct, addr))
            .get(self.keys.account_failures(acct))
            .pttl(self.keys.account_failures(acct))
            .get(self.keys.address_failures(addr))
            .pttl(self.keys.address_failures(addr))
            .exists(self.keys.known_address(acct, addr))
            .query_async(&mut conn)
            .await?;
        Ok(ThrottleReading {
            pair_locked_for: ttl(lock_ttl),
            account_failures: account_failures.unwrap_or(0),
            account_window_left: ttl(account_ttl),
            address_failures: address_failures.unwrap_or(0),
            address_window_left: ttl(address_ttl),
            known_address: known,
        })
    }

    /// Counts a wrong password, and locks the pair out when it has had its free ones.
    pub async fn failed(&self, attempt: &Attempt) {
        if let Err(e) = self.count_failure(attempt).await {
            tracing::warn!(error = %e, "a failed sign-in was not counted: Redis is unavailable");
        }
    }

    async fn count_failure(&self, attempt: &Attempt) -> redis::RedisResult<()> {
        let (acct, addr) = (&attempt.account, &attempt.address);
        let window = millis(self.policy.window);
        let mut conn = self.redis.clone();
        let pair = self.keys.pair_failures(acct, addr);
        // The pair's count lives `window` after its last failure; the account's and
        // the address's windows start at their first failure (SET NX, then INCR keeps
        // the TTL), so a steady trickle cannot keep them from ever resetting.
        let mut pipe = redis::pipe();
        pipe.incr(&pair, 1).pexpire(&pair, window as i64).ignore();
        count_in_window(&mut pipe, self.keys.account_failures(acct), window);
        count_in_window(&mut pipe, self.keys.address_failures(addr), window);
        let (pair_failures,): (u64,) = pipe.query_async(&mut conn).await?;
        if let Some(lock) = self.policy.pair_lock_after(pair_failures) {
            let () = redis::cmd("SET")
                .arg(self.keys.pair_lock(acct, addr))
                .arg(1)
                .arg("PX")
                .arg(millis(lock))
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// A successful sign-in: the address's count for the account starts over, and the
    /// address becomes one the owner is known to use (exempt from the account limit).
    pub async fn succeeded(&self, attempt: &Attempt) {
        let (acct, addr) = (&attempt.account, &attempt.address);
        let mut conn = self.redis.clone();
        let result: redis::RedisResult<()> = redis::pipe()
            .del(self.keys.pair_failures(acct, addr))
            .ignore()
            .del(self.keys.pair_lock(acct, addr))
            .ignore()
            .pset_ex(
                self.keys.known_address(acct, addr),
                1,
                millis(self.policy.known_address_ttl),
            )
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "a successful sign-in was not recorded: Redis is unavailable");
        }
    }
}
