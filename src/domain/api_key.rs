//! API key secrets: generation, format and the keyed hash they are stored as.
//!
//! A key is `mp_` followed by 40 random base62 characters (~238 bits). Because the
//! secret is high-entropy, a fast keyed hash (HMAC-SHA256 with a server-side pepper)
//! is safe to store and cheap enough to check on every gateway call; argon2 would
//! only add latency without adding security.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::Serialize;
use sha2::Sha256;
use utoipa::ToSchema;

pub const KEY_PREFIX: &str = "mp_";
const RANDOM_LEN: usize = 40;
/// How many leading characters are kept in clear to identify a key in listings.
pub const VISIBLE_PREFIX_LEN: usize = 11;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Whether a key can be used at a given instant. The one place this rule lives: the
/// gateway path, the key listings and rotation all ask it.
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Expired,
    /// Revoked, or rotated and past its grace period.
    Revoked,
}

impl KeyStatus {
    /// A revocation (or the end of a rotation's grace period) takes effect at
    /// `revoked_at`; an expiry at `expires_at`. Revoked wins when both have passed.
    pub fn at(revoked_at: Option<DateTime<Utc>>, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        if revoked_at.is_some_and(|at| at <= now) {
            Self::Revoked
        } else if expires_at.is_some_and(|at| at <= now) {
            Self::Expired
        } else {
            Self::Active
        }
    }
}

/// A freshly generated key: the secret is shown to the caller once and then dropped.
pub struct GeneratedKey {
    pub secret: String,
    pub visible_prefix: String,
}

pub fn generate() -> GeneratedKey {
    let mut rng = rand::rng();
    let random: String = (0..RANDOM_LEN)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    let secret = format!("{KEY_PREFIX}{random}");
    let visible_prefix = secret[..VISIBLE_PREFIX_LEN].to_owned();
    GeneratedKey { secret, visible_prefix }
}

/// Whether `candidate` has the shape of a key; cheap rejection before any lookup.
pub fn looks_like_key(candidate: &str) -> bool {
    candidate.len() == KEY_PREFIX.len() + RANDOM_LEN
        && candidate.starts_with(KEY_PREFIX)
        && candidate[KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The value stored and looked up: HMAC-SHA256(pepper, secret).
pub fn keyed_hash(pepper: &str, secret: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(pepper.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(secret.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = generate();
        assert!(looks_like_key(&key.secret));
        assert_eq!(key.visible_prefix.len(), VISIBLE_PREFIX_LEN);
        assert!(key.secret.starts_with(&key.visible_prefix));
        assert_ne!(generate().secret, key.secret);
    }

    #[test]
    fn shape_check_rejects_other_strings() {
        assert!(!looks_like_key("mp_short"));
        assert!(!looks_like_key(&format!("sk_{}", "a".repeat(40))));
        assert!(!looks_like_key(&format!("mp_{}!", "a".repeat(39))));
    }

    #[test]
    fn hash_depends_on_pepper_and_secret() {
        let a = keyed_hash("pepper-1", "mp_x");
        assert_eq!(a, keyed_hash("pepper-1", "mp_x"));
        assert_ne!(a, keyed_hash("pepper-2", "mp_x"));
        assert_ne!(a, keyed_hash("pepper-1", "mp_y"));
        assert_eq!(a.len(), 32);
    }
}
