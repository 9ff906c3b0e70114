//! Password rules and argon2id hashing (CPU-heavy: call from a blocking thread).

use argon2::{
    password_hash::{phc::PasswordHash, PasswordHasher, PasswordVerifier},
    Argon2,
};

use super::Invalid;

pub const MIN_PASSWORD_LEN: usize = 10;
pub const MAX_PASSWORD_LEN: usize = 256;

/// A password that meets the length rules; never printed.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if len < MIN_PASSWORD_LEN {
            return Err(Invalid::new(format!("must be at least {MIN_PASSWORD_LEN} characters")));
        }
        if len > MAX_PASSWORD_LEN {
            return Err(Invalid::new(format!("must be at most {MAX_PASSWORD_LEN} characters")));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A PHC string (`$argon2id$v=19$...`) with a fresh random salt.
    pub fn hash(&self) -> anyhow::Result<String> {
        Ok(Argon2::default()
            .hash_password(self.0.as_bytes())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?
            .to_string())
    }
}

/// Checks `candidate` against a stored PHC string. A malformed stored hash counts as
/// a mismatch, so a broken row can never let anyone in.
pub fn verify(candidate: &str, stored_hash: &str) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => Argon2::default().verify_password(candidate.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A valid hash of a random password, verified against when the email is unknown so
/// that login takes as long for unknown emails as for wrong passwords.
pub fn timing_decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let random: String = uuid::Uuid::new_v4().to_string();
        Password(random).hash().unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_the_same_password() {
        let hash = Password::parse("correct horse battery").unwrap().hash().unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &hash));
        assert!(!verify("correct horse battery!", &hash));
        assert!(!verify("correct horse battery", "not-a-hash"));
    }

    #[test]
    fn length_rules() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(257)).is_err());
        assert!(!format!("{:?}", Password::parse("long enough pw").unwrap()).contains("long"));
    }
}
