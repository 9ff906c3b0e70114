//! Turns a queued email into a MIME message and hands it to the SMTP server (lettre).

use lettre::{
    message::{
        header::{HeaderName, HeaderValue},
        Mailbox, MultiPart, SinglePart,
    },
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};

use crate::{config::SmtpConfig, domain::outbox::sanitize_error, store::outbox::QueuedEmail};

/// Why a delivery did not happen. Every message here is sanitized (no credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// The email cannot be turned into a message (a recipient lettre refuses): no
    /// retry will change that.
    Unbuildable(String),
    /// The SMTP server answered with an error (4xx or 5xx).
    Refused(String),
    /// No answer: connection refused or dropped, timeout, TLS failure.
    Unreachable(String),
}

impl SendFailure {
    pub fn message(&self) -> &str {
        match self {
            Self::Unbuildable(m) | Self::Refused(m) | Self::Unreachable(m) => m,
        }
    }
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The right-hand side of `Message-ID`s: the sender's domain.
    id_domain: String,
    /// What must never be stored or logged from an error.
    secrets: Vec<String>,
}

impl Mailer {
    pub fn new(smtp: &SmtpConfig, from: &str) -> anyhow::Result<Self> {
        let secrets: Vec<String> = [Some(smtp.url.expose()), smtp.password.as_ref().map(|p| p.expose())]
            .into_iter()
            .flatten()
            .map(str::to_owned)
            .collect();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp.url.expose())
            .map_err(|e| anyhow::anyhow!("MP_SMTP_URL: {}", redact(&e.to_string(), &secrets)))?
            .timeout(Some(smtp.timeout))
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("MP_SMTP_FROM `{from}`: {e}"))?;
        let id_domain = from.email.domain().to_owned();
        Ok(Self {
            transport,
            from,
            id_domain,
            secrets,
        })
    }

    /// Delivers one email: `Ok` once the SMTP server accepted it for every recipient.
    pub async fn send(&self, email: &QueuedEmail) -> Result<(), SendFailure> {
        let message = self.message(email).map_err(SendFailure::Unbuildable)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = redact(&e.to_string(), &self.secrets);
                Err(if e.is_transient() || e.is_permanent() {
                    SendFailure::Refused(text)
                } else {
                    SendFailure::Unreachable(text)
                })
            }
        }
    }

    fn message(&self, email: &QueuedEmail) -> Result<Message, String> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(email.subject.clone())
            // The same id on every attempt: if a crash makes the worker send an email
            // twice (see `jobs::outbox`), receivers that dedupe by Message-ID show it once.
            .message_id(Some(format!("<{}@{}>", email.id, self.id_domain)))
            // RFC 3834: no vacation replies or auto-responders back to us.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_owned(),
            ));
        for recipient in &email.recipients {
            let mailbox: Mailbox = recipient
                .parse()
                .map_err(|e| format!("recipient `{recipient}` is not an address the mailer accepts: {e}"))?;
            builder = builder.to(mailbox);
        }
        let built = if email.html_body.is_empty() {
            builder.singlepart(SinglePart::plain(email.text_body.clone()))
        } else {
            builder.multipart(MultiPart::alternative_plain_html(
                email.text_body.clone(),
                email.html_body.clone(),
            ))
        };
        built.map_err(|e| format!("the message cannot be built: {e}"))
    }
}

fn redact(message: &str, secrets: &[String]) -> String {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    sanitize_error(message, &secrets)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn mailer(url: &str) -> anyhow::Result<Mailer> {
        Mailer::new(
            &SmtpConfig::parse(url, Duration::from_secs(1))?,
            "Alerts <alerts@example.com>",
        )
    }

    #[test]
    fn a_transport_is_built_for_every_tls_mode() {
        // STARTTLS and TLS build their rustls configuration here (roots, provider), so
        // a missing TLS feature or crypto provider fails now rather than at first send.
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://user:pw@mail.example.com:587?tls=required",
            "smtps://user:pw@mail.example.com",
        ] {
            let mailer = mailer(url).unwrap_or_else(|e| panic!("{url}: {e:#}"));
            assert_eq!(mailer.id_domain, "example.com");
        }
    }

    #[test]
    fn errors_are_stored_without_the_password_or_url() {
        let mailer = mailer("smtps://user:hunter2-pw@mail.example.com").unwrap();
        let text = redact(
            "535 authentication failed for smtps://user:hunter2-pw@mail.example.com (hunter2-pw)",
            &mailer.secrets,
        );
        assert!(!text.contains("hunter2-pw"), "{text}");
    }
}
