//! The emails of an account: address verification, "you already have an account",
//! and password reset. Each carries a single-use token and says how to use it.
//!
//! The token is given as text with the API call that takes it, not as a link that
//! acts when opened: mail scanners open links, and would use up single-use tokens.

use chrono::{DateTime, Utc};

use super::{
    account_token::{TokenLifetimes, TokenPurpose},
    alert_email::{escape_html, RenderedEmail},
};

/// Where account emails point and how long their tokens last (configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMailSettings {
    /// The API's public address, as people reach it (`MP_PUBLIC_URL`).
    pub api_base: String,
    pub lifetimes: TokenLifetimes,
}

/// Which account email to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountEmail {
    /// After sign-up (or a repeated sign-up of an unverified address).
    Verify,
    /// The same email, asked for again by the signed-in account (`POST
    /// /v1/auth/verify-email/resend`). Throttled apart from `Verify`, so a resend
    /// right after sign-up is sent.
    VerifyAgain,
    /// A sign-up for an address that has a verified account: that account's owner is
    /// told, and offered a password reset, instead of the sign-up being refused.
    AlreadyRegistered,
    /// The owner asked to reset the password.
    Reset,
}

impl AccountEmail {
    /// The name account emails are throttled under ([`crate::store::account_tokens`]
    /// queues one per name and address every five minutes).
    pub fn throttle_name(self) -> &'static str {
        match self {
            Self::Verify => "email_verification",
            Self::VerifyAgain => "email_verification_resend",
            // A repeated sign-up and a reset request both offer a reset: one bucket.
            Self::AlreadyRegistered | Self::Reset => "password_reset",
        }
    }

    /// What the token in the email is good for.
    pub fn purpose(self) -> TokenPurpose {
        match self {
            Self::Verify | Self::VerifyAgain => TokenPurpose::EmailVerification,
            Self::AlreadyRegistered | Self::Reset => TokenPurpose::PasswordReset,
        }
    }

    /// Renders the email; `api_base` is the public address of the API
    /// (`https://meterplane.example.com`).
    pub fn render(self, api_base: &str, token: &str, expires_at: DateTime<Utc>) -> RenderedEmail {
        let api_base = api_base.trim_end_matches('/');
        let expires = expires_at.format("%Y-%m-%d %H:%M UTC");
        let (subject, intro, call, outro) = match self {
            Self::Verify | Self::VerifyAgain => (
                "Confirm your email address for Meterplane",
                "Confirm that this address is yours to finish setting up your Meterplane account."
                    .to_owned(),
                format!("POST {api_base}/v1/auth/verify-email\n{{\"token\": \"{token}\"}}"),
                "If you did not sign up for Meterplane, ignore this email: the account stays unconfirmed.",
            ),
            Self::AlreadyRegistered => (
                "You already have a Meterplane account",
                "Someone, probably you, tried to sign up for Meterplane with this address, which already \
                 has an account. Sign in with your password instead. If you forgot it, set a new one with \
                 this token:"
                    .to_owned(),
                format!(
                    "POST {api_base}/v1/auth/password-reset/confirm\n{{\"token\": \"{token}\", \"password\": \"<your new password>\"}}"
                ),
                "If it was not you, ignore this email: nothing changes on your account.",
            ),
            Self::Reset => (
                "Reset your Meterplane password",
                "A password reset was asked for this Meterplane account. Set a new password with this token:"
                    .to_owned(),
                format!(
                    "POST {api_base}/v1/auth/password-reset/confirm\n{{\"token\": \"{token}\", \"password\": \"<your new password>\"}}"
                ),
                "If you did not ask for this, ignore this email: your password stays as it is.",
            ),
        };
        let text = format!(
            "{intro}\n\nToken: {token}\n\n{call}\n\nThe token works once and expires at {expires}.\n\n{outro}\n"
        );
        let html = format!(
            "<p>{}</p><p>Token: <code>{token}</code></p><pre>{}</pre><p>The token works once and expires at {expires}.</p><p>{}</p>",
            escape_html(&intro),
            escape_html(&call),
            escape_html(outro),
        );
        RenderedEmail {
            subject: subject.to_owned(),
            text,
            html,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_email_carries_its_token_the_call_that_takes_it_and_the_expiry() {
        let at: DateTime<Utc> = "2026-12-05T10:30:00Z".parse().unwrap();
        for (email, path) in [
            (AccountEmail::Verify, "/v1/auth/verify-email"),
            (AccountEmail::VerifyAgain, "/v1/auth/verify-email"),
            (AccountEmail::AlreadyRegistered, "/v1/auth/password-reset/confirm"),
            (AccountEmail::Reset, "/v1/auth/password-reset/confirm"),
        ] {
            let rendered = email.render("https://mp.example.com/", "abc123", at);
            for body in [&rendered.text, &rendered.html] {
                assert!(body.contains("abc123"), "{body}");
                assert!(body.contains(&format!("https://mp.example.com{path}")), "{body}");
                assert!(body.contains("2026-12-05 10:30 UTC"), "{body}");
            }
            assert!(
                !rendered.html.contains("\"token\""),
                "quotes are escaped: {}",
                rendered.html
            );
        }
        assert_eq!(
            AccountEmail::AlreadyRegistered.render("x", "t", at).subject,
            "You already have a Meterplane account"
        );
        assert_eq!(AccountEmail::AlreadyRegistered.purpose(), TokenPurpose::PasswordReset);
    }
}
