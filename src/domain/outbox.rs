//! The email outbox's rules: which kinds of email exist, the states a queued email
//! goes through, what a valid email to enqueue is, when a failed delivery is tried
//! again, and what of an error may be stored.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{email::EmailAddress, Invalid};

/// What an email is for. Each kind is listed in the table's CHECK constraint.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EmailKind {
    /// A budget crossed one of its alert thresholds.
    BudgetAlert,
    /// Proves a person owns the address they signed up with.
    EmailVerification,
    PasswordReset,
    /// A finalized invoice, to the customer's billing email.
    Invoice,
}

impl EmailKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Alerts are what an organization reads back as its alert history; account
    /// emails belong to a person and never show up there.
    pub fn is_alert(self) -> bool {
        matches!(self, Self::BudgetAlert)
    }

    /// Account emails carry single-use links: once delivered, their bodies are
    /// emptied so the outbox does not keep live tokens at rest.
    pub fn keeps_body_after_send(self) -> bool {
        !matches!(self, Self::EmailVerification | Self::PasswordReset)
    }

    pub fn alerts() -> impl Iterator<Item = Self> {
        use strum::IntoEnumIterator;
        Self::iter().filter(|kind| kind.is_alert())
    }
}

/// Where a queued email is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EmailStatus {
    /// Waiting for its first or next delivery attempt.
    Pending,
    /// The SMTP server accepted it.
    Sent,
    /// Given up: every attempt failed, or the message could not be built.
    Failed,
    /// Nothing to send: there was nobody to send it to (an organization without
    /// alert addresses). Kept so the history shows the alert happened.
    Skipped,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Most recipients one email may have (an organization has at most 20 alert addresses).
pub const MAX_RECIPIENTS: usize = 50;
/// Longest dedupe key, in bytes (printable ASCII only).
pub const MAX_DEDUPE_KEY_LEN: usize = 300;
/// Longest subject, in characters.
pub const MAX_SUBJECT_LEN: usize = 400;
/// Longest stored error, in characters.
pub const MAX_ERROR_LEN: usize = 1000;

/// An email ready to be queued: checked against the table's constraints before it
/// reaches them, so a caller learns of a bad email as a domain error, not a 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    kind: EmailKind,
    org_id: Option<Uuid>,
    dedupe_key: String,
    recipients: Vec<EmailAddress>,
    subject: String,
    text_body: String,
    html_body: String,
}

impl OutgoingEmail {
    /// `dedupe_key` decides "at most once": enqueuing a second email with the same key
    /// does nothing. Recipients are de-duplicated; none at all queues the email as
    /// `skipped`.
    pub fn new(
        kind: EmailKind,
        org_id: Option<Uuid>,
        dedupe_key: String,
        recipients: Vec<EmailAddress>,
        subject: String,
        text_body: String,
        html_body: String,
    ) -> Result<Self, Invalid> {
        if kind.is_alert() && org_id.is_none() {
            return Err(Invalid::new("an alert belongs to an organization"));
        }
        if dedupe_key.is_empty()
            || dedupe_key.len() > MAX_DEDUPE_KEY_LEN
            || !dedupe_key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Invalid::new(format!(
                "dedupe key must be 1 to {MAX_DEDUPE_KEY_LEN} printable ASCII characters without spaces"
            )));
        }
        if subject.trim().is_empty() || subject.chars().count() > MAX_SUBJECT_LEN || subject.contains(['\r', '\n']) {
            return Err(Invalid::new(format!(
                "subject must be one line of 1 to {MAX_SUBJECT_LEN} characters"
            )));
        }
        let mut unique: Vec<EmailAddress> = Vec::with_capacity(recipients.len());
        for address in recipients {
            if !unique.contains(&address) {
                unique.push(address);
            }
        }
        if unique.len() > MAX_RECIPIENTS {
            return Err(Invalid::new(format!("at most {MAX_RECIPIENTS} recipients")));
        }
        Ok(Self {
            kind,
            org_id,
            dedupe_key,
            recipients: unique,
            subject,
            text_body,
            html_body,
        })
    }

    pub fn kind(&self) -> EmailKind {
        self.kind
    }
    pub fn org_id(&self) -> Option<Uuid> {
        self.org_id
    }
    pub fn dedupe_key(&self) -> &str {
        &self.dedupe_key
    }
    pub fn recipients(&self) -> &[EmailAddress] {
        &self.recipients
    }
    pub fn subject(&self) -> &str {
        &self.subject
    }
    pub fn text_body(&self) -> &str {
        &self.text_body
    }
    pub fn html_body(&self) -> &str {
        &self.html_body
    }

    /// The state a new row starts in.
    pub fn initial_status(&self) -> EmailStatus {
        if self.recipients.is_empty() {
            EmailStatus::Skipped
        } else {
            EmailStatus::Pending
        }
    }
}

/// When a failed delivery is tried again: exponential backoff from `base`, doubling
/// per failed attempt up to `cap`, with "equal jitter" (a random point in the upper
/// half of the step) so instances that failed together do not retry together; after
/// `max_attempts` attempts the email is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    base: Duration,
    cap: Duration,
    max_attempts: u32,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryIn(Duration),
    GiveUp,
}

impl RetryPolicy {
    pub fn new(base: Duration, cap: Duration, max_attempts: u32) -> Result<Self, Invalid> {
        if base.is_zero() {
            return Err(Invalid::new("the retry base must be greater than zero"));
        }
        if cap < base {
            return Err(Invalid::new("the retry cap must not be below the retry base"));
        }
        if max_attempts == 0 {
            return Err(Invalid::new("at least one attempt"));
        }
        Ok(Self {
            base,
            cap,
            max_attempts,
        })
    }

    /// The longest wait after `attempts_made` failed attempts (at least 1):
    /// `min(cap, base · 2^(attempts_made − 1))`, without overflow for any count.
    pub fn ceiling(&self, attempts_made: u32) -> Duration {
        let doublings = attempts_made.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let grown = u32::try_from(factor)
            .ok()
            .and_then(|f| self.base.checked_mul(f))
            .unwrap_or(self.cap);
        grown.min(self.cap)
    }

    /// After `attempts_made` attempts (counting the one that just failed): give up,
    /// or wait somewhere in `[ceiling / 2, ceiling]`. `jitter` in `[0, 1]` picks the
    /// point (anything else, NaN included, is clamped into that range).
    pub fn after_failure(&self, attempts_made: u32, jitter: f64) -> AfterFailure {
        if attempts_made >= self.max_attempts {
            return AfterFailure::GiveUp;
        }
        let ceiling = self.ceiling(attempts_made);
        let jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) };
        let half = ceiling / 2;
        let spread = (ceiling - half).mul_f64(jitter);
        AfterFailure::RetryIn((half + spread).min(ceiling))
    }
}

/// An error message safe to store and show: every secret replaced by `***`,
/// control characters turned into spaces, cut to [`MAX_ERROR_LEN`] characters.
/// SMTP errors can echo what the client sent, so the SMTP password goes through here.
pub fn sanitize_error(message: &str, secrets: &[&str]) -> String {
    let mut text = message.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
    }
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let text = text.trim();
    if text.chars().count() <= MAX_ERROR_LEN {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_ERROR_LEN - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn policy(base_ms: u64, cap_ms: u64, max: u32) -> RetryPolicy {
        RetryPolicy::new(Duration::from_millis(base_ms), Duration::from_millis(cap_ms), max).unwrap()
    }

    fn address(raw: &str) -> EmailAddress {
        EmailAddress::parse(raw).unwrap()
    }

    fn email(
        kind: EmailKind,
        org: Option<Uuid>,
        key: &str,
        to: Vec<EmailAddress>,
        subject: &str,
    ) -> Result<OutgoingEmail, Invalid> {
        OutgoingEmail::new(
            kind,
            org,
            key.into(),
            to,
            subject.into(),
            "text".into(),
            "<p>html</p>".into(),
        )
    }

    #[test]
    fn kinds_and_statuses_round_trip_through_their_names() {
        use strum::IntoEnumIterator;
        for kind in EmailKind::iter() {
            assert_eq!(kind.as_str().parse::<EmailKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for status in EmailStatus::iter() {
            assert_eq!(status.as_str().parse::<EmailStatus>().unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }

    #[test]
    fn only_alerts_are_history_and_only_alerts_keep_their_bodies() {
        assert_eq!(EmailKind::alerts().collect::<Vec<_>>(), vec![EmailKind::BudgetAlert]);
        assert!(EmailKind::BudgetAlert.keeps_body_after_send());
        assert!(!EmailKind::PasswordReset.keeps_body_after_send());
        assert!(!EmailKind::EmailVerification.keeps_body_after_send());
    }

    #[test]
    fn outgoing_emails_are_checked_like_the_table_checks_them() {
        let org = Some(Uuid::now_v7());
        let to = || vec![address("ops@example.com")];
        assert!(email(EmailKind::BudgetAlert, org, "budget_alert:x:1:80", to(), "Alert").is_ok());
        assert!(
            email(EmailKind::BudgetAlert, None, "k", to(), "Alert").is_err(),
            "alert without org"
        );
        assert!(email(EmailKind::PasswordReset, None, "password_reset:1", to(), "Reset").is_ok());
        for key in [
            "",
            "has space",
            "tab\there",
            "ünïcode",
            &"k".repeat(MAX_DEDUPE_KEY_LEN + 1),
        ] {
            assert!(
                email(EmailKind::PasswordReset, None, key, to(), "s").is_err(),
                "{key:?}"
            );
        }
        for subject in ["", "  ", "two\nlines", "cr\rhere", &"s".repeat(MAX_SUBJECT_LEN + 1)] {
            assert!(
                email(EmailKind::PasswordReset, None, "k", to(), subject).is_err(),
                "{subject:?}"
            );
        }
        let many = (0..=MAX_RECIPIENTS)
            .map(|i| address(&format!("a{i}@example.com")))
            .collect();
        assert!(email(EmailKind::PasswordReset, None, "k", many, "s").is_err());
    }

    #[test]
    fn recipients_are_deduplicated_and_none_means_skipped() {
        let org = Some(Uuid::now_v7());
        let twice = vec![
            address("ops@example.com"),
            address("OPS@example.com"),
            address("b@example.com"),
        ];
        let queued = email(EmailKind::BudgetAlert, org, "k", twice, "s").unwrap();
        assert_eq!(queued.recipients().len(), 2);
        assert_eq!(queued.initial_status(), EmailStatus::Pending);
        let nobody = email(EmailKind::BudgetAlert, org, "k", vec![], "s").unwrap();
        assert_eq!(nobody.initial_status(), EmailStatus::Skipped);
    }

    #[test]
    fn retry_policy_rejects_nonsense() {
        assert!(RetryPolicy::new(Duration::ZERO, Duration::from_secs(1), 3).is_err());
        assert!(RetryPolicy::new(Duration::from_secs(2), Duration::from_secs(1), 3).is_err());
        assert!(RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(1), 0).is_err());
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let p = policy(1_000, 10_000, 100);
        let ceilings: Vec<u64> = (1..=6).map(|n| p.ceiling(n).as_millis() as u64).collect();
        assert_eq!(ceilings, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(
            p.after_failure(3, 1.0),
            AfterFailure::RetryIn(Duration::from_millis(4_000))
        );
        assert_eq!(
            p.after_failure(3, 0.0),
            AfterFailure::RetryIn(Duration::from_millis(2_000))
        );
        assert_eq!(
            p.after_failure(3, f64::NAN),
            AfterFailure::RetryIn(Duration::from_millis(2_000))
        );
    }

    #[test]
    fn the_last_attempt_gives_up() {
        let p = policy(1_000, 10_000, 3);
        assert!(matches!(p.after_failure(1, 0.5), AfterFailure::RetryIn(_)));
        assert!(matches!(p.after_failure(2, 0.5), AfterFailure::RetryIn(_)));
        assert_eq!(p.after_failure(3, 0.5), AfterFailure::GiveUp);
        let once = policy(1_000, 1_000, 1);
        assert_eq!(once.after_failure(1, 0.5), AfterFailure::GiveUp);
    }

    proptest! {
        #[test]
        fn delays_stay_within_the_jitter_bounds(
            base in 1u64..100_000,
            extra in 0u64..10_000_000,
            max in 1u32..1_000,
            attempts in 1u32..=u32::MAX,
            jitter in proptest::num::f64::ANY,
        ) {
            let p = policy(base, base + extra, max);
            let ceiling = p.ceiling(attempts);
            prop_assert!(ceiling <= Duration::from_millis(base + extra));
            prop_assert!(ceiling >= Duration::from_millis(base));
            match p.after_failure(attempts, jitter) {
                AfterFailure::GiveUp => prop_assert!(attempts >= max),
                AfterFailure::RetryIn(delay) => {
                    prop_assert!(attempts < max);
                    prop_assert!(delay <= ceiling);
                    prop_assert!(delay >= ceiling / 2);
                    prop_assert!(delay >= Duration::from_millis(base) / 2);
                }
            }
        }

        #[test]
        fn the_ceiling_never_shrinks_as_attempts_grow(base in 1u64..100_000, extra in 0u64..10_000_000, n in 1u32..200) {
            let p = policy(base, base + extra, 10);
            prop_assert!(p.ceiling(n) <= p.ceiling(n + 1));
        }

        #[test]
        fn stored_errors_hold_no_secret_and_no_control_characters(
            prefix in ".{0,40}", secret in "[a-zA-Z0-9!%]{6,20}", suffix in ".{0,2000}",
        ) {
            let message = format!("{prefix}{secret}\r\n{suffix}{secret}");
            let stored = sanitize_error(&message, &[&secret]);
            prop_assert!(!stored.contains(&secret));
            prop_assert!(!stored.chars().any(char::is_control));
            prop_assert!(stored.chars().count() <= MAX_ERROR_LEN);
        }
    }

    #[test]
    fn sanitizing_keeps_short_clean_messages() {
        assert_eq!(
            sanitize_error("permanent error (535): bad password hunter2", &["hunter2", ""]),
            "permanent error (535): bad password ***"
        );
        assert_eq!(sanitize_error("  line\nbreak ", &[]), "line break");
    }
}
