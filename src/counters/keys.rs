//! The Redis key design. Every key of an organization carries its id as a hash tag
//! (`mp:{<org>}:…`), so all of one organization's counters share a slot: the
//! authorize script can check and reserve the key, project, organization, customer
//! and agent scopes in one atomic step, also on Redis Cluster. The price is that one
//! organization's counters live on one shard.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{budget::BudgetScope, period::BudgetPeriod};

/// How long a requests- or tokens-per-minute window outlives its minute.
pub const MINUTE_WINDOW_MS: i64 = 120_000;

/// A budget or rate-limit scope as the counters see it: its kind and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeRef {
    pub kind: BudgetScope,
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
        format!(
            "{}:spend:{}:{}:{period_tag}",
            self.base,
            scope.kind.as_str(),
            scope.id.simple()
        )
    }

    /// Reserved, not yet settled spend of a scope (micro-USD).
    pub fn reserved(&self, scope: ScopeRef) -> String {
        format!("{}:reserved:{}:{}", self.base, scope.kind.as_str(), scope.id.simple())
    }

    pub fn requests_in_minute(&self, scope: ScopeRef, minute: i64) -> String {
        format!(
            "{}:rpm:{}:{}:{minute}",
            self.base,
            scope.kind.as_str(),
            scope.id.simple()
        )
    }

    pub fn tokens_in_minute(&self, scope: ScopeRef, minute: i64) -> String {
        format!(
            "{}:tpm:{}:{}:{minute}",
            self.base,
            scope.kind.as_str(),
            scope.id.simple()
        )
    }
}

/// The keys of the live spend-log stream (`crate::live`). They are not per
/// organization: the stream's fan-out is one channel for the deployment, and the set of
/// watched organizations is one sorted set, so neither carries a hash tag. A ticket is
/// one key read and deleted by one command, so it needs no slot of its own either.
#[derive(Debug, Clone)]
pub struct LiveKeys {
    prefix: String,
}

impl LiveKeys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The pub/sub channel that carries new event ids and watch announcements.
    pub fn channel(&self) -> String {
        format!("{}live:events", self.prefix)
    }

    /// Organizations someone watches, scored by when that stops being true (Unix ms).
    pub fn watched(&self) -> String {
        format!("{}live:watched", self.prefix)
    }

    /// A stream ticket, named by the SHA-256 of its secret (hex): Redis never holds
    /// the ticket itself.
    pub fn ticket(&self, secret_sha256_hex: &str) -> String {
        format!("{}live:ticket:{secret_sha256_hex}", self.prefix)
    }
}

/// The keys of login throttling (`auth::throttle`). Accounts are named by a hash of
/// their email and addresses by [`crate::domain::login_throttle::address_key`]; the
/// keys are touched by separate commands, so they need no common slot.
#[derive(Debug, Clone)]
pub struct LoginKeys {
    prefix: String,
}

impl LoginKeys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Consecutive wrong passwords for one account from one address.
    pub fn pair_failures(&self, account: &str, address: &str) -> String {
        format!("{}login:pair:{account}:{address}", self.prefix)
    }

    /// Present while the pair is locked out; its TTL is the time left.
    pub fn pair_lock(&self, account: &str, address: &str) -> String {
        format!("{}login:lock:{account}:{address}", self.prefix)
    }

    /// Wrong passwords for the account from every address in the current window.
    pub fn account_failures(&self, account: &str) -> String {
        format!("{}login:acct:{account}", self.prefix)
    }

    /// Wrong passwords from the address over every account in the current window.
    pub fn address_failures(&self, address: &str) -> String {
        format!("{}login:addr:{address}", self.prefix)
    }

    /// Present while the address counts as one the account's owner signs in from.
    pub fn known_address(&self, account: &str, address: &str) -> String {
        format!("{}login:known:{account}:{address}", self.prefix)
    }
}

/// The minute an instant falls in, counted from the epoch.
pub fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// The tag of the window of `period` that holds `at`: the period's letter and the
/// window's first day (`m20261201`), or `t` for the total.
pub fn period_tag(period: BudgetPeriod, at: DateTime<Utc>) -> String {
    let window = period.window(at);
    match period {
        BudgetPeriod::Total => "t".to_owned(),
        BudgetPeriod::Daily => format!("d{}", window.first_day().format("%Y%m%d")),
        BudgetPeriod::Weekly => format!("w{}", window.first_day().format("%Y%m%d")),
        BudgetPeriod::Monthly => format!("m{}", window.first_day().format("%Y%m%d")),
    }
}

/// How long a period counter is kept after a write: past its window's end, with room
/// for late events; the total never expires.
pub fn period_lifetime(period: BudgetPeriod, at: DateTime<Utc>) -> i64 {
    const SLACK_SECS: i64 = 2 * 86_400;
    match period.window(at).end {
        Some(end) => (end - at).num_seconds().max(0) + SLACK_SECS,
        None => 0,
    }
}

/// Every period, in the order the ledger reports them (daily, weekly, monthly, total).
pub const PERIODS: [BudgetPeriod; 4] = [
    BudgetPeriod::Daily,
    BudgetPeriod::Weekly,
    BudgetPeriod::Monthly,
    BudgetPeriod::Total,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_an_organization_carries_its_hash_tag_and_the_prefix() {
        let org = Uuid::nil();
        let keys = OrgKeys::new("mp:", org);
        let scope = ScopeRef {
            kind: BudgetScope::Customer,
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

    /// The scripts rebuild a reservation's reserved-counter keys from the record's
    /// scope letters and the reservations key (`<base>:rsv`): both must match these keys.
    #[test]
    fn the_reservation_scripts_rebuild_every_reserved_key() {
        use strum::IntoEnumIterator;
        let script = include_str!("reservations.lua");
        let keys = OrgKeys::new("mp:", Uuid::nil());
        let base = keys.reservations().strip_suffix(":rsv").map(str::to_owned);
        for kind in BudgetScope::iter() {
            let scope = ScopeRef { kind, id: Uuid::max() };
            assert_eq!(
                Some(keys.reserved(scope)),
                base.as_ref()
                    .map(|b| format!("{b}:reserved:{}:{}", kind.as_str(), scope.id.simple()))
            );
            assert!(
                script.contains(&format!("{} = '", kind.as_str())),
                "{kind:?} has a letter"
            );
            assert!(
                script.contains(&format!("= '{}'", kind.as_str())),
                "{kind:?} is read back"
            );
        }
    }

    #[test]
    fn live_keys_carry_the_prefix_and_never_the_ticket_itself() {
        let keys = LiveKeys::new("mp:");
        assert_eq!(keys.channel(), "mp:live:events");
        assert_eq!(keys.watched(), "mp:live:watched");
        assert_eq!(keys.ticket("ab12"), "mp:live:ticket:ab12");
    }

    #[test]
    fn period_tags_name_the_utc_window_and_outlive_it() {
        let at = "2027-01-01T23:59:59Z".parse::<DateTime<Utc>>().unwrap_or_default();
        let tags: Vec<String> = PERIODS.iter().map(|p| period_tag(*p, at)).collect();
        // 1 January 2027 is a Friday; its ISO week started on Monday 28 December.
        assert_eq!(tags, ["d20270101", "w20261228", "m20270101", "t"]);
        assert_eq!(period_lifetime(BudgetPeriod::Daily, at), 1 + 2 * 86_400);
        assert_eq!(period_lifetime(BudgetPeriod::Total, at), 0);
        assert_eq!(minute_of(at), at.timestamp() / 60);
    }
}
