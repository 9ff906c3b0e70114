//! The Redis key design. Every key of an organization carries its id as a hash tag
//! (`mp:{<org>}:…`), so all of one organization's counters share a slot: the
//! authorize script can check and reserve the key, project, organization, customer
//! and agent scopes in one atomic step, also on Redis Cluster. The price is that one
//! organization's counters live on one shard.

use chrono::{DateTime, Datelike, Utc};
use uuid::Uuid;

/// How long a requests- or tokens-per-minute window outlives its minute.
pub const MINUTE_WINDOW_MS: i64 = 120_000;

/// A budget or rate-limit scope as the counters see it: its kind and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeRef {
    pub kind: &'static str,
    pub id: Uuid,
}

/// Builds the keys of one organization under the configured prefix.
#[derive(Debug, Clone)]
pub struct OrgKeys {
    base: String,
}

impl OrgKeys {
    pub fn new(prefix: &str, org: Uuid) -> Self {
        Self {
            base: format!("{prefix}{{{}}}", org.simple()),
        }
    }

    /// Present while the counters hold everything PostgreSQL held when they were
    /// built; gone after a flush, a restart without persistence, or a failover that
    /// lost writes.
    pub fn ready(&self) -> String {
        format!("{}:ready", self.base)
    }

    pub fn reservations_by_expiry(&self) -> String {
        format!("{}:rsv:exp", self.base)
    }

    pub fn reservations(&self) -> String {
        format!("{}:rsv", self.base)
    }

    /// Settled spend (micro-USD) of a scope in one period, e.g. `…:spend:customer:<id>:m202612`.
    pub fn spend(&self, scope: ScopeRef, period_tag: &str) -> String {
        format!("{}:spend:{}:{}:{period_tag}", self.base, scope.kind, scope.id.simple())
    }

    /// Reserved, not yet settled spend of a scope (micro-USD).
    pub fn reserved(&self, scope: ScopeRef) -> String {
        format!("{}:reserved:{}:{}", self.base, scope.kind, scope.id.simple())
    }

    pub fn requests_in_minute(&self, scope: ScopeRef, minute: i64) -> String {
        format!("{}:rpm:{}:{}:{minute}", self.base, scope.kind, scope.id.simple())
    }

    pub fn tokens_in_minute(&self, scope: ScopeRef, minute: i64) -> String {
        format!("{}:tpm:{}:{}:{minute}", self.base, scope.kind, scope.id.simple())
    }
}

/// The minute an instant falls in, counted from the epoch.
pub fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// The tags of the four budget periods an instant falls in (daily, ISO-weekly,
/// monthly, total), with how long their counters are kept after a write. The
/// lifetimes outlast each period with room for late events.
pub fn period_tags(at: DateTime<Utc>) -> [(String, i64); 4] {
    const DAY: i64 = 86_400;
    let week = at.iso_week();
    [
        (format!("d{}", at.format("%Y%m%d")), 3 * DAY),
        (format!("w{}{:02}", week.year(), week.week()), 15 * DAY),
        (format!("m{}", at.format("%Y%m")), 63 * DAY),
        ("t".to_owned(), 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_an_organization_carries_its_hash_tag_and_the_prefix() {
        let org = Uuid::nil();
        let keys = OrgKeys::new("mp:", org);
        let scope = ScopeRef {
            kind: "customer",
            id: Uuid::max(),
        };
        let tag = format!("{{{}}}", org.simple());
        for key in [
            keys.ready(),
            keys.reservations(),
            keys.reservations_by_expiry(),
            keys.spend(scope, "t"),
            keys.reserved(scope),
            keys.requests_in_minute(scope, 1),
            keys.tokens_in_minute(scope, 1),
        ] {
            assert!(key.starts_with("mp:"), "{key}");
            assert_eq!(key.matches('{').count(), 1, "one hash tag only: {key}");
            assert!(key.contains(&tag), "{key}");
        }
    }

    #[test]
    fn period_tags_follow_utc_calendar_and_iso_weeks() {
        let at = "2027-01-01T23:59:59Z".parse::<DateTime<Utc>>().unwrap_or_default();
        let tags: Vec<String> = period_tags(at).into_iter().map(|(tag, _)| tag).collect();
        // 1 January 2027 is a Friday in ISO week 53 of 2026.
        assert_eq!(tags, ["d20270101", "w202653", "m202701", "t"]);
        assert_eq!(minute_of(at), at.timestamp() / 60);
    }
}
