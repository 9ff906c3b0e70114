//! Login throttling rules: how many wrong passwords an account and a client address
//! may send before they must wait, and for how long. The counters live in Redis
//! (`auth::throttle`); the decisions are these plain functions.
//!
//! Three limits, so that a stranger cannot lock the owner out for good:
//! - per (account, address): after `pair_free_failures` wrong passwords each further
//!   one locks this address out of this account for a delay that doubles, up to
//!   `pair_max_delay`; the count is forgotten `window` after the last failure, and a
//!   successful login from the address resets it;
//! - per account, from every address: a looser limit per `window`, which stops a
//!   distributed guesser; addresses that signed in to the account successfully within
//!   `known_address_ttl` are exempt, so the owner keeps getting in while strangers
//!   spray the account from elsewhere;
//! - per address, over every account: a limit per `window` against one client
//!   guessing many accounts (password spraying).

use std::{net::IpAddr, time::Duration};

use sha2::{Digest, Sha256};

/// The limits, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Wrong passwords per (account, address) answered without delay.
    pub pair_free_failures: u32,
    /// The first lock-out after the free failures; each further failure doubles it.
    pub pair_base_delay: Duration,
    pub pair_max_delay: Duration,
    /// Wrong passwords per account from all addresses (known ones exempt) per window.
    pub account_limit: u32,
    /// Wrong passwords per client address over all accounts per window.
    pub address_limit: u32,
    /// How long a count lives: the pair's since its last failure, the account's and
    /// the address's since their first failure in the window.
    pub window: Duration,
    /// How long an address that signed in successfully stays exempt from the
    /// per-account limit.
    pub known_address_ttl: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            pair_free_failures: 5,
            pair_base_delay: Duration::from_secs(1),
            pair_max_delay: Duration::from_secs(15 * 60),
            account_limit: 100,
            address_limit: 300,
            window: Duration::from_secs(60 * 60),
            known_address_ttl: Duration::from_secs(30 * 24 * 60 * 60),
        }
    }
}

impl ThrottlePolicy {
    /// How long the pair is locked after its `failures`-th consecutive failure, or
    /// `None` while failures are still free.
    pub fn pair_lock_after(&self, failures: u64) -> Option<Duration> {
        let over = failures.checked_sub(u64::from(self.pair_free_failures))?;
        if over == 0 {
            return None;
        }
        // 2^(over-1) × base, capped; the shift is bounded so it cannot overflow.
        let factor = 1u32 << (over - 1).min(20);
        Some(self.pair_base_delay.saturating_mul(factor).min(self.pair_max_delay))
    }
}

/// What the counters held when a login was attempted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThrottleReading {
    /// Time left on the pair's lock-out, if any.
    pub pair_locked_for: Option<Duration>,
    pub account_failures: u64,
    /// Time left in the account's window.
    pub account_window_left: Option<Duration>,
    pub address_failures: u64,
    pub address_window_left: Option<Duration>,
    /// The address signed in to this account successfully not long ago.
    pub known_address: bool,
}

/// Whether a login may be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleVerdict {
    Allow,
    /// Refused without looking at the password; try again after this long.
    Wait(Duration),
}

/// Decides from the counters whether a login attempt is looked at at all. The longest
/// of the applicable waits wins.
pub fn decide(policy: &ThrottlePolicy, reading: &ThrottleReading) -> ThrottleVerdict {
    let mut wait = reading.pair_locked_for;
    let over = |count: u64, limit: u32, left: Option<Duration>| {
        (count >= u64::from(limit)).then(|| left.unwrap_or(policy.window))
    };
    if !reading.known_address {
        wait = wait.max(over(
            reading.account_failures,
            policy.account_limit,
            reading.account_window_left,
        ));
    }
    wait = wait.max(over(
        reading.address_failures,
        policy.address_limit,
        reading.address_window_left,
    ));
    match wait {
        Some(wait) if !wait.is_zero() => ThrottleVerdict::Wait(wait),
        _ => ThrottleVerdict::Allow,
    }
}

/// Whole seconds for `Retry-After`, rounded up so a client that waits that long is
/// not refused again.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The client address as throttling counts it: IPv4 as is, IPv6 by its /64 (one
/// subscriber usually holds a whole /64, so single addresses would be free to rotate).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The account as throttling counts it: a hash of the normalized email, so unknown
/// emails are throttled exactly like known ones (the answer reveals nothing) and
/// Redis never holds the addresses themselves.
pub fn account_key(normalized_email: &str) -> String {
    hex::encode(&Sha256::digest(normalized_email.as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            pair_free_failures: 3,
            pair_base_delay: Duration::from_secs(2),
            pair_max_delay: Duration::from_secs(60),
            account_limit: 10,
            address_limit: 20,
            window: Duration::from_secs(600),
            known_address_ttl: Duration::from_secs(3600),
        }
    }

    #[test]
    fn pair_lock_outs_double_after_the_free_failures_and_stop_at_the_cap() {
        let p = policy();
        let delays: Vec<_> = (0..=12).map(|n| p.pair_lock_after(n).map(|d| d.as_secs())).collect();
        assert_eq!(
            delays,
            [
                None,
                None,
                None,
                None,
                Some(2),
                Some(4),
                Some(8),
                Some(16),
                Some(32),
                Some(60),
                Some(60),
                Some(60),
                Some(60)
            ]
        );
        assert_eq!(p.pair_lock_after(u64::MAX), Some(Duration::from_secs(60)));
    }

    #[test]
    fn nothing_counted_allows() {
        assert_eq!(decide(&policy(), &ThrottleReading::default()), ThrottleVerdict::Allow);
    }

    #[test]
    fn a_locked_pair_waits_for_its_lock() {
        let reading = ThrottleReading {
            pair_locked_for: Some(Duration::from_millis(1500)),
            ..Default::default()
        };
        assert_eq!(
            decide(&policy(), &reading),
            ThrottleVerdict::Wait(Duration::from_millis(1500))
        );
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
    }

    #[test]
    fn the_account_limit_spares_known_addresses_but_not_the_address_limit() {
        let at_account_limit = ThrottleReading {
            account_failures: 10,
            account_window_left: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        assert_eq!(
            decide(&policy(), &at_account_limit),
            ThrottleVerdict::Wait(Duration::from_secs(30))
        );
        let below = ThrottleReading {
            account_failures: 9,
            ..at_account_limit
        };
        assert_eq!(decide(&policy(), &below), ThrottleVerdict::Allow);
        let known = ThrottleReading {
            known_address: true,
            ..at_account_limit
        };
        assert_eq!(decide(&policy(), &known), ThrottleVerdict::Allow);
        let spraying = ThrottleReading {
            known_address: true,
            address_failures: 20,
            address_window_left: None,
            ..Default::default()
        };
        assert_eq!(
            decide(&policy(), &spraying),
            ThrottleVerdict::Wait(Duration::from_secs(600))
        );
    }

    #[test]
    fn the_longest_wait_wins() {
        let reading = ThrottleReading {
            pair_locked_for: Some(Duration::from_secs(5)),
            address_failures: 20,
            address_window_left: Some(Duration::from_secs(50)),
            ..Default::default()
        };
        assert_eq!(
            decide(&policy(), &reading),
            ThrottleVerdict::Wait(Duration::from_secs(50))
        );
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        assert_eq!(address_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(address_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }

    #[test]
    fn account_keys_hide_the_email_and_do_not_collide_on_case_normalized_input() {
        let key = account_key("ada@example.com");
        assert_eq!(key.len(), 32);
        assert!(!key.contains("ada"));
        assert_ne!(key, account_key("bob@example.com"));
    }
}
