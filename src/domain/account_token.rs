//! Single-use tokens sent by email (address verification, password reset): random
//! secrets of which only a SHA-256 is stored.

use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a token may be used for; a token of one purpose is refused for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum TokenPurpose {
    EmailVerification,
    PasswordReset,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Random bytes in a token: 256 bits, far beyond guessing within its lifetime.
const TOKEN_BYTES: usize = 32;
/// Length of a token as sent (hex).
pub const TOKEN_LEN: usize = TOKEN_BYTES * 2;

/// A fresh token: the secret to send and the hash to store.
pub fn generate() -> (String, [u8; 32]) {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let hash = hash(&secret);
    (secret, hash)
}

/// The stored form of a presented token. Whitespace around it (a pasted line) is
/// ignored; anything that is not a token's shape hashes to a value no token has.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.trim().to_ascii_lowercase().as_bytes()).into()
}

/// Whether `secret` could be a token at all, before any lookup.
pub fn looks_valid(secret: &str) -> bool {
    let secret = secret.trim();
    secret.len() == TOKEN_LEN && secret.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How long tokens stay usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetimes {
    pub verification: Duration,
    pub reset: Duration,
}

impl TokenLifetimes {
    pub fn of(&self, purpose: TokenPurpose) -> Duration {
        match purpose {
            TokenPurpose::EmailVerification => self.verification,
            TokenPurpose::PasswordReset => self.reset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_hash_to_what_is_stored() {
        let (a, hash_a) = generate();
        let (b, _) = generate();
        assert_ne!(a, b);
        assert!(looks_valid(&a));
        assert_eq!(hash(&a), hash_a);
        assert_eq!(hash(&format!(" {} \n", a.to_uppercase())), hash_a);
        assert_ne!(hash(&b), hash_a);
        assert!(!looks_valid("short"));
        assert!(!looks_valid(&"z".repeat(TOKEN_LEN)));
    }
}
