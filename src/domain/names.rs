//! Human-facing names and URL slugs.

use super::Invalid;

pub const MAX_NAME_LEN: usize = 200;

/// A display name: trimmed, 1..=200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        // Before trimming: some characters (U+0085) are both whitespace and control.
        if raw.chars().any(char::is_control) {
            return Err(Invalid::new("must not contain control characters"));
        }
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid::new("must not be empty"));
        }
        if name.chars().count() > MAX_NAME_LEN {
            return Err(Invalid::new(format!("must be at most {MAX_NAME_LEN} characters")));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid::new("must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A URL-safe organization identifier: lowercase ASCII letters, digits and single
/// hyphens, 3..=48 characters, starting and ending with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_shape = !raw.starts_with('-') && !raw.ends_with('-') && !raw.contains("--");
        if !(3..=48).contains(&raw.len()) || !ok_chars || !ok_shape {
            return Err(Invalid::new(
                "must be 3-48 lowercase letters, digits or single hyphens, not starting or ending with a hyphen",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Derives a slug from a display name (`org` when too little of it is usable).
    pub fn from_name(name: &Name) -> Self {
        let mut slug = String::new();
        for c in name.as_str().chars().flat_map(char::to_lowercase) {
            if c.is_ascii_alphanumeric() {
                slug.push(c);
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
            if slug.len() >= 40 {
                break;
            }
        }
        Self::parse(slug.trim_end_matches('-')).unwrap_or_else(|_| Self("org".to_owned()))
    }

    /// The same slug with a short suffix, used when the plain one is taken.
    pub fn with_suffix(&self, suffix: &str) -> Option<Self> {
        Self::parse(&format!("{}-{suffix}", self.0)).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("  Acme  ").unwrap().as_str(), "Acme");
        assert!(Name::parse("   ").is_err());
        assert!(Name::parse(&"x".repeat(201)).is_err());
        assert!(Name::parse("a\u{0}b").is_err());
    }

    #[test]
    fn slugs_follow_the_url_rules() {
        assert!(Slug::parse("acme-ai").is_ok());
        for bad in ["ab", "-acme", "acme-", "ac--me", "Acme", "acme_ai", &"a".repeat(49)] {
            assert!(Slug::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn slugs_derive_from_names() {
        let slug = Slug::from_name(&Name::parse("Acme AI, Inc.").unwrap());
        assert_eq!(slug.as_str(), "acme-ai-inc");
        assert_eq!(Slug::from_name(&Name::parse("日本").unwrap()).as_str(), "org");
    }
}
