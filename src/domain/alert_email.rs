//! The budget-alert email: what it says, and the key that makes it happen once per
//! threshold, per period, per budget.
//!
//! Everything here is pure: the budgets code builds a [`BudgetAlert`] from what it
//! knows when a threshold is crossed, and `store::outbox::enqueue_budget_alert`
//! renders it with the organization's name and queues it.

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use uuid::Uuid;

use super::{budget::BudgetScope, period::BudgetPeriod, Invalid};

/// What a budget applies to (the budgets module's scope, in words fit for an email).
/// How a scope is named in an email.
fn noun(scope: BudgetScope) -> &'static str {
    match scope {
        BudgetScope::Customer => "customer",
        BudgetScope::Agent => "agent",
        BudgetScope::ApiKey => "API key",
        BudgetScope::Project => "project",
        BudgetScope::Organization => "organization",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Calls are denied.
    Hard,
    /// Alerts only.
    Soft,
}

/// The facts of one threshold crossing, as the budgets code knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetAlert {
    pub budget_id: Uuid,
    /// The customer, agent, key, project or organization the spend was counted for.
    pub subject_id: Uuid,
    pub scope: BudgetScope,
    /// The scope's id as the tenant knows it: the customer or agent id it sends on
    /// usage events, or the project / API key id. Ignored for the organization scope.
    pub scope_id: String,
    /// A display name when the scope has one (a project's or a key's name).
    pub scope_name: Option<String>,
    /// USD spent in the period when the threshold was crossed.
    pub spend: Decimal,
    /// The budget amount, USD.
    pub amount: Decimal,
    /// The threshold crossed, in percent of the amount (1–100).
    pub threshold_percent: u8,
    pub period: BudgetPeriod,
    /// Start of the period the spend counts in (for `total`, when counting started).
    /// Part of the dedupe key, to the second: a new period (or a reset, if the budgets
    /// code starts a new period on reset) alerts again.
    pub period_start: DateTime<Utc>,
    /// End of the period (exclusive); `None` for `total`.
    pub period_end: Option<DateTime<Utc>>,
    pub enforcement: Enforcement,
}

/// Subject and bodies of an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The identity of an alert: budget, period and threshold. Two crossings with the
/// same key are the same alert, whichever instance or request saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertKey {
    pub budget_id: Uuid,
    /// What the budget was counted for: a default budget applies to every customer (or
    /// agent) without one of its own, and each of them gets its own alerts.
    pub subject_id: Uuid,
    pub period_start: DateTime<Utc>,
    pub threshold_percent: u8,
}

const KEY_PREFIX: &str = "budget_alert";
/// The period start in ISO 8601 basic format, so the key has no `:` of its own.
const KEY_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

impl AlertKey {
    /// `budget_alert:<budgetId>:<subjectId>:<periodStart>:<threshold>`, e.g.
    /// `budget_alert:0193…:0193…:20261201T000000Z:80`.
    pub fn to_dedupe_key(self) -> String {
        format!(
            "{KEY_PREFIX}:{}:{}:{}:{}",
            self.budget_id,
            self.subject_id,
            self.period_start.format(KEY_TIME_FORMAT),
            self.threshold_percent
        )
    }

    /// Reads a key written by [`AlertKey::to_dedupe_key`]; `None` for anything else.
    pub fn parse(key: &str) -> Option<Self> {
        let mut parts = key.split(':');
        let (prefix, budget, subject) = (parts.next()?, parts.next()?, parts.next()?);
        let (start, threshold) = (parts.next()?, parts.next()?);
        if prefix != KEY_PREFIX || parts.next().is_some() {
            return None;
        }
        Some(Self {
            budget_id: budget.parse().ok()?,
            subject_id: subject.parse().ok()?,
            period_start: NaiveDateTime::parse_from_str(start, KEY_TIME_FORMAT).ok()?.and_utc(),
            threshold_percent: threshold.parse().ok()?,
        })
    }
}

/// Longest user-provided name put in a subject line, in characters.
const SUBJECT_NAME_LEN: usize = 60;

impl BudgetAlert {
    /// Checks what the email would otherwise say wrongly.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=100).contains(&self.threshold_percent) {
            return Err(Invalid::new("the threshold must be between 1 and 100 percent"));
        }
        if self.amount < Decimal::ZERO || self.spend < Decimal::ZERO {
            return Err(Invalid::new("spend and amount must not be negative"));
        }
        match (self.period, self.period_end) {
            (BudgetPeriod::Total, None) => Ok(()),
            (BudgetPeriod::Total, Some(_)) => Err(Invalid::new("a total budget has no period end")),
            (_, None) => Err(Invalid::new("a daily, weekly or monthly budget has a period end")),
            (_, Some(end)) if end <= self.period_start => Err(Invalid::new("the period must end after it starts")),
            _ => Ok(()),
        }
    }

    pub fn key(&self) -> AlertKey {
        AlertKey {
            budget_id: self.budget_id,
            subject_id: self.subject_id,
            period_start: self.period_start,
            threshold_percent: self.threshold_percent,
        }
    }

    pub fn dedupe_key(&self) -> String {
        self.key().to_dedupe_key()
    }

    /// Spend reached the whole budget of a hard budget: calls are being denied now.
    fn denying(&self) -> bool {
        self.enforcement == Enforcement::Hard && self.threshold_percent >= 100
    }

    /// `customer "alice"`, `project "Production"`, `the organization`.
    fn scope_label(&self, max_name: usize) -> String {
        match self.scope {
            BudgetScope::Organization => "the organization".to_owned(),
            scope => format!("{} \"{}\"", noun(scope), shorten(self.display_name(), max_name)),
        }
    }

    fn display_name(&self) -> &str {
        self.scope_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(&self.scope_id)
    }

    /// Subject, plain text and HTML of the alert for the organization `org_name`.
    /// Every name that came from a user is escaped in the HTML and kept on one line
    /// in the subject.
    pub fn render(&self, org_name: &str) -> RenderedEmail {
        let facts = self.facts(org_name);
        RenderedEmail {
            subject: self.subject(org_name),
            text: text_body(&facts),
            html: html_body(&facts),
        }
    }

    fn subject(&self, org_name: &str) -> String {
        let mut subject = format!(
            "[Meterplane] {}: {} reached {}% of its {} budget",
            shorten(org_name, SUBJECT_NAME_LEN),
            self.scope_label(SUBJECT_NAME_LEN),
            self.threshold_percent,
            self.period.as_str(),
        );
        if self.denying() {
            subject.push_str("; calls are now denied");
        }
        subject
    }

    fn facts(&self, org_name: &str) -> Facts {
        let scope = match self.scope {
            BudgetScope::Organization => "the whole organization".to_owned(),
            scope => {
                let name = self.display_name();
                if name == self.scope_id {
                    format!("{} {}", noun(scope), name)
                } else {
                    format!("{} {} (id {})", noun(scope), name, self.scope_id)
                }
            }
        };
        let period = match self.period_end {
            Some(end) => format!(
                "{}, {} to {} (the budget starts over then)",
                self.period.as_str(),
                utc_minute(self.period_start),
                utc_minute(end)
            ),
            None => "total, with no end (the budget never starts over by itself)".to_owned(),
        };
        let whose_calls = match self.scope {
            BudgetScope::Organization => "the organization's calls".to_owned(),
            scope => format!("calls for this {}", noun(scope)),
        };
        let until = match self.period_end {
            Some(end) => format!("until the period ends on {} or the budget is raised", utc_minute(end)),
            None => "until the budget is raised or reset".to_owned(),
        };
        let at_full = match (self.enforcement, self.denying()) {
            (Enforcement::Hard, true) => {
                format!("This is a hard budget and spend has reached it: {whose_calls} are now denied {until}.")
            }
            (Enforcement::Hard, false) => {
                format!("This is a hard budget: when spend reaches 100% of it, {whose_calls} are denied {until}.")
            }
            (Enforcement::Soft, _) => {
                "This is a soft budget: it only sends alerts; calls are not denied, even past 100%.".to_owned()
            }
        };
        Facts {
            org_name: org_name.to_owned(),
            headline: format!(
                "The {} budget of {} has reached {}% of its amount.",
                self.period.as_str(),
                self.scope_label(usize::MAX),
                self.threshold_percent
            ),
            rows: vec![
                ("Organization", org_name.to_owned()),
                ("Scope", scope),
                ("Spend this period", format_usd(self.spend)),
                ("Budget", format_usd(self.amount)),
                ("Used", percent_used(self.spend, self.amount)),
                ("Threshold crossed", format!("{}%", self.threshold_percent)),
                ("Period", period),
                (
                    "Enforcement",
                    match self.enforcement {
                        Enforcement::Hard => "hard (calls are denied at 100%)".to_owned(),
                        Enforcement::Soft => "soft (alerts only)".to_owned(),
                    },
                ),
            ],
            at_full,
        }
    }
}

/// What both bodies say, before text or HTML formatting.
struct Facts {
    org_name: String,
    headline: String,
    rows: Vec<(&'static str, String)>,
    at_full: String,
}

const FOOTER: &str = "You receive this email because this address is an alert address of the organization";

fn text_body(facts: &Facts) -> String {
    let width = facts.rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0) + 2;
    let mut text = format!("Budget alert for {}\n\n{}\n\n", facts.org_name, facts.headline);
    for (label, value) in &facts.rows {
        text.push_str(&format!("  {:<width$} {}\n", format!("{label}:"), value, width = width));
    }
    text.push_str(&format!(
        "\n{}\n\n-- \n{} {} in Meterplane.\n",
        facts.at_full, FOOTER, facts.org_name
    ));
    text
}

fn html_body(facts: &Facts) -> String {
    let mut rows = String::new();
    for (label, value) in &facts.rows {
        rows.push_str(&format!(
            "<tr><th style=\"text-align:left;padding:4px 16px 4px 0;font-weight:600\">{}</th><td style=\"padding:4px 0\">{}</td></tr>\n",
            escape_html(label),
            escape_html(value)
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Budget alert for {org}</title></head>\n\
         <body style=\"font-family:sans-serif;color:#1a1a1a;line-height:1.4\">\n\
         <h2 style=\"margin:0 0 12px\">Budget alert for {org}</h2>\n\
         <p>{headline}</p>\n\
         <table style=\"border-collapse:collapse\">\n{rows}</table>\n\
         <p><strong>{at_full}</strong></p>\n\
         <p style=\"color:#666;font-size:12px\">{footer} {org} in Meterplane.</p>\n\
         </body></html>\n",
        org = escape_html(&facts.org_name),
        headline = escape_html(&facts.headline),
        rows = rows,
        at_full = escape_html(&facts.at_full),
        footer = escape_html(FOOTER),
    )
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `81.2` → `81.20 USD`; `0.0123` → `0.0123 USD`: at least cents, never a float,
/// never rounded away (money is stored with up to ten decimal places).
pub fn format_usd(amount: Decimal) -> String {
    let mut value = amount.normalize();
    if value.scale() < 2 {
        value.rescale(2);
    }
    format!("{value} USD")
}

/// Spend as a percentage of the amount, one decimal place (display only).
fn percent_used(spend: Decimal, amount: Decimal) -> String {
    if amount.is_zero() {
        return "n/a (the budget is 0)".to_owned();
    }
    match spend
        .checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|s| s.checked_div(amount))
    {
        Some(percent) => {
            let mut rounded = percent.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero);
            rounded.rescale(1);
            format!("{rounded}%")
        }
        None => "n/a".to_owned(),
    }
}

fn utc_minute(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// One line of at most `max` characters: control characters become spaces, and a
/// longer text is cut with `...`.
fn shorten(text: &str, max: usize) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let clean = clean.trim();
    if clean.chars().count() <= max {
        return clean.to_owned();
    }
    let mut cut: String = clean.chars().take(max.saturating_sub(3)).collect();
    cut.push_str("...");
    cut
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn alert() -> BudgetAlert {
        BudgetAlert {
            budget_id: "0193a8e2-7c4b-7d2e-9f00-000000000001".parse().unwrap(),
            subject_id: Uuid::from_u128(7),
            scope: BudgetScope::Customer,
            scope_id: "alice".into(),
            scope_name: None,
            spend: dec!(81.2),
            amount: dec!(100),
            threshold_percent: 80,
            period: BudgetPeriod::Monthly,
            period_start: at("2026-12-01T00:00:00Z"),
            period_end: Some(at("2027-01-01T00:00:00Z")),
            enforcement: Enforcement::Hard,
        }
    }

    #[test]
    fn the_dedupe_key_names_budget_subject_period_and_threshold() {
        let a = alert();
        assert_eq!(
            a.dedupe_key(),
            "budget_alert:0193a8e2-7c4b-7d2e-9f00-000000000001:00000000-0000-0000-0000-000000000007:20261201T000000Z:80"
        );
        assert_eq!(AlertKey::parse(&a.dedupe_key()), Some(a.key()));
        let next_period = BudgetAlert {
            period_start: at("2027-01-01T00:00:00Z"),
            ..alert()
        };
        assert_ne!(next_period.dedupe_key(), a.dedupe_key());
        let next_threshold = BudgetAlert {
            threshold_percent: 100,
            ..alert()
        };
        assert_ne!(next_threshold.dedupe_key(), a.dedupe_key());
        // One default budget, two customers: two alerts.
        let other_customer = BudgetAlert {
            subject_id: Uuid::from_u128(8),
            ..alert()
        };
        assert_ne!(other_customer.dedupe_key(), a.dedupe_key());
    }

    #[test]
    fn foreign_keys_do_not_parse() {
        for key in [
            "",
            "password_reset:abc",
            "budget_alert:not-a-uuid:20261201T000000Z:80",
            "budget_alert:0193a8e2-7c4b-7d2e-9f00-000000000001:2026-12-01:80",
            "budget_alert:0193a8e2-7c4b-7d2e-9f00-000000000001:20261201T000000Z:800",
            "budget_alert:0193a8e2-7c4b-7d2e-9f00-000000000001:20261201T000000Z:80:extra",
        ] {
            assert_eq!(AlertKey::parse(key), None, "{key}");
        }
    }

    #[test]
    fn a_monthly_hard_alert_says_what_crossed_and_what_happens_at_100() {
        let email = alert().render("Acme AI");
        assert_eq!(
            email.subject,
            "[Meterplane] Acme AI: customer \"alice\" reached 80% of its monthly budget"
        );
        for expected in [
            "The monthly budget of customer \"alice\" has reached 80% of its amount.",
            "Spend this period:  81.20 USD",
            "Budget:             100.00 USD",
            "Used:               81.2%",
            "Threshold crossed:  80%",
            "monthly, 2026-12-01 00:00 UTC to 2027-01-01 00:00 UTC",
            "when spend reaches 100% of it, calls for this customer are denied until the period ends on 2027-01-01 00:00 UTC",
        ] {
            assert!(email.text.contains(expected), "text lacks {expected:?}:\n{}", email.text);
        }
        assert!(email.html.contains("<th style=\"text-align:left;padding:4px 16px 4px 0;font-weight:600\">Spend this period</th><td style=\"padding:4px 0\">81.20 USD</td>"));
    }

    #[test]
    fn a_hard_budget_at_100_says_calls_are_denied_now() {
        let email = BudgetAlert {
            threshold_percent: 100,
            spend: dec!(100.0000000001),
            ..alert()
        }
        .render("Acme AI");
        assert!(email
            .subject
            .ends_with("reached 100% of its monthly budget; calls are now denied"));
        assert!(email
            .text
            .contains("spend has reached it: calls for this customer are now denied"));
        assert!(email.text.contains("100.0000000001 USD"));
    }

    #[test]
    fn a_soft_total_budget_has_no_end_and_denies_nothing() {
        let email = BudgetAlert {
            scope: BudgetScope::Project,
            scope_id: "0193a8e2-7c4b-7d2e-9f00-00000000000a".into(),
            scope_name: Some("Production".into()),
            period: BudgetPeriod::Total,
            period_end: None,
            enforcement: Enforcement::Soft,
            threshold_percent: 100,
            ..alert()
        }
        .render("Acme AI");
        assert_eq!(
            email.subject,
            "[Meterplane] Acme AI: project \"Production\" reached 100% of its total budget"
        );
        assert!(email.text.contains("total, with no end"));
        assert!(email
            .text
            .contains("project Production (id 0193a8e2-7c4b-7d2e-9f00-00000000000a)"));
        assert!(email.text.contains("calls are not denied"));
        assert!(!email.text.contains("are now denied"));
    }

    #[test]
    fn the_organization_scope_reads_naturally() {
        let email = BudgetAlert {
            scope: BudgetScope::Organization,
            scope_id: String::new(),
            ..alert()
        }
        .render("Acme AI");
        assert!(email.subject.contains("Acme AI: the organization reached 80%"));
        assert!(email.text.contains("the organization's calls are denied"));
    }

    #[test]
    fn user_strings_are_escaped_in_html_and_kept_on_one_line_in_the_subject() {
        let email = BudgetAlert {
            scope_id: "<script>alert('x')</script>\r\nBcc: evil@example.com".into(),
            ..alert()
        }
        .render("Tom & \"Jerry\" <Ltd>");
        assert!(!email.html.contains("<script>"));
        assert!(email.html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(email.html.contains("Tom &amp; &quot;Jerry&quot; &lt;Ltd&gt;"));
        assert!(!email.subject.contains(['\r', '\n']));
    }

    #[test]
    fn long_names_are_shortened_in_the_subject_only() {
        let long = "x".repeat(500);
        let email = BudgetAlert {
            scope_id: long.clone(),
            ..alert()
        }
        .render(&long);
        assert!(email.subject.chars().count() < 250, "{}", email.subject);
        assert!(email.text.contains(&long));
    }

    #[test]
    fn money_keeps_cents_and_every_stored_digit() {
        assert_eq!(format_usd(dec!(81.2)), "81.20 USD");
        assert_eq!(format_usd(dec!(100)), "100.00 USD");
        assert_eq!(format_usd(dec!(0.0123)), "0.0123 USD");
        assert_eq!(format_usd(dec!(12.3400000000)), "12.34 USD");
        assert_eq!(format_usd(dec!(0)), "0.00 USD");
    }

    #[test]
    fn percent_used_rounds_for_display_and_survives_a_zero_budget() {
        assert_eq!(percent_used(dec!(81.25), dec!(100)), "81.3%");
        assert_eq!(percent_used(dec!(1), dec!(3)), "33.3%");
        assert_eq!(percent_used(dec!(100), dec!(100)), "100.0%");
        assert!(percent_used(dec!(1), dec!(0)).starts_with("n/a"));
    }

    #[test]
    fn validation_catches_what_would_render_wrongly() {
        assert!(alert().validate().is_ok());
        for bad in [
            BudgetAlert {
                threshold_percent: 0,
                ..alert()
            },
            BudgetAlert {
                threshold_percent: 101,
                ..alert()
            },
            BudgetAlert {
                spend: dec!(-1),
                ..alert()
            },
            BudgetAlert {
                period_end: None,
                ..alert()
            },
            BudgetAlert {
                period: BudgetPeriod::Total,
                ..alert()
            },
            BudgetAlert {
                period_end: Some(at("2026-11-01T00:00:00Z")),
                ..alert()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn html_never_carries_markup_from_names(org in ".{0,80}", id in ".{0,80}", name in proptest::option::of(".{0,80}")) {
            let email = BudgetAlert { scope_id: id, scope_name: name, ..alert() }.render(&org);
            // Every `<` in the HTML is one of the template's own tags.
            for (i, _) in email.html.match_indices('<') {
                let tag = &email.html[i..];
                prop_assert!(
                    ["<!DOCTYPE", "<html", "</html", "<head", "</head", "<meta", "<title", "</title", "<body", "</body",
                     "<h2", "</h2", "<p", "</p", "<table", "</table", "<tr", "</tr", "<th", "</th", "<td", "</td",
                     "<strong", "</strong"].iter().any(|t| tag.starts_with(t)),
                    "unexpected markup at {}", &tag[..tag.len().min(30)]
                );
            }
            prop_assert!(!email.subject.chars().any(char::is_control));
        }

        #[test]
        fn dedupe_keys_round_trip(secs in 0i64..4_000_000_000, threshold in 1u8..=100) {
            let key = AlertKey {
                budget_id: Uuid::now_v7(),
                subject_id: Uuid::now_v7(),
                period_start: DateTime::from_timestamp(secs, 0).unwrap(),
                threshold_percent: threshold,
            };
            prop_assert_eq!(AlertKey::parse(&key.to_dedupe_key()), Some(key));
            prop_assert!(key.to_dedupe_key().bytes().all(|b| b.is_ascii_graphic()));
        }
    }
}
