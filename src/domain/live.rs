//! Rules of the live spend-log stream: what travels between instances, why a stream
//! ends, how far a stream may fall behind, and what a stream ticket grants.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What one instance tells the others on the live channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveMessage {
    /// Someone started watching the organization: publishers stop trusting a cached
    /// "nobody watches" for it.
    Watch { org: Uuid },
    /// Events of the organization were committed, in the order they were recorded.
    Events { org: Uuid, ids: Vec<Uuid> },
}

impl LiveMessage {
    /// `w <org>` or `e <org> <id> <id> …`, ids in their 32-digit hex form: about
    /// 33 bytes per event, and no JSON to parse per message.
    pub fn encode(&self) -> String {
        match self {
            Self::Watch { org } => format!("w {}", org.simple()),
            Self::Events { org, ids } => {
                let mut text = String::with_capacity(34 + 33 * ids.len());
                text.push_str("e ");
                text.push_str(&org.simple().to_string());
                for id in ids {
                    text.push(' ');
                    text.push_str(&id.simple().to_string());
                }
                text
            }
        }
    }

    /// `None` for anything that is not a message [`LiveMessage::encode`] wrote (another
    /// version's format, or a stranger publishing on the channel).
    pub fn decode(text: &str) -> Option<Self> {
        let mut words = text.split(' ');
        let kind = words.next()?;
        let org = Uuid::try_parse(words.next()?).ok()?;
        match kind {
            "w" => words.next().is_none().then_some(Self::Watch { org }),
            "e" => {
                let ids = words.map(Uuid::try_parse).collect::<Result<Vec<_>, _>>().ok()?;
                (!ids.is_empty()).then_some(Self::Events { org, ids })
            }
            _ => None,
        }
    }
}

/// Why a stream ended; sent as the `reason` of its final `end` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum EndReason {
    /// It lasted `MP_LIVE_MAX_STREAM_SECS`; reconnect.
    Expired,
    /// The client read more slowly than events arrived and fell `MP_LIVE_BUFFER`
    /// events behind; events were dropped, so the stream ends rather than skip them.
    TooSlow,
    /// The instance is stopping; reconnect (to another instance).
    Shutdown,
    /// The instance lost its Redis subscription: events may be missed until it is back.
    Unavailable,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Event ids waiting to be sent to one stream's client, at most `capacity` of them.
#[derive(Debug)]
pub struct Backlog {
    ids: VecDeque<Uuid>,
    capacity: usize,
}

/// The client is too far behind: the backlog cannot take the new ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl Backlog {
    pub fn new(capacity: usize) -> Self {
        Self {
            ids: VecDeque::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds one ingest request's ids. An empty backlog takes them all, even more than
    /// `capacity` (a batch of 1,000 must not end a stream whose client keeps up); a
    /// backlog that would grow past `capacity` refuses them and is emptied.
    pub fn push(&mut self, ids: &[Uuid]) -> Result<(), Overflow> {
        if !self.ids.is_empty() && self.ids.len() + ids.len() > self.capacity {
            self.ids.clear();
            return Err(Overflow);
        }
        self.ids.extend(ids);
        Ok(())
    }

    /// Up to `max` of the oldest ids.
    pub fn take(&mut self, max: usize) -> Vec<Uuid> {
        let n = max.min(self.ids.len());
        self.ids.drain(..n).collect()
    }
}

/// What a stream ticket grants: reading one organization's stream as one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketGrant {
    pub user_id: Uuid,
    pub org_id: Uuid,
}

impl TicketGrant {
    pub fn encode(&self) -> String {
        format!("{} {}", self.user_id, self.org_id)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (user, org) = text.split_once(' ')?;
        Some(Self {
            user_id: Uuid::try_parse(user).ok()?,
            org_id: Uuid::try_parse(org).ok()?,
        })
    }
}

/// How a ticket's secret is named in storage: its SHA-256, hex. The secret has 256
/// random bits, so a plain hash (no salt, no stretching) cannot be reversed.
pub fn ticket_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether a string can be a ticket at all (`mpt_` and 64 hex digits), so junk is
/// refused before Redis is asked.
pub fn looks_like_ticket(secret: &str) -> bool {
    secret
        .strip_prefix(TICKET_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub const TICKET_PREFIX: &str = "mpt_";

/// A new ticket secret: `mpt_` and 256 random bits from the operating system's
/// generator (reseeded `ThreadRng`), hex.
pub fn new_ticket() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TICKET_PREFIX}{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    #[test]
    fn messages_survive_the_channel_and_junk_is_refused() {
        let org = Uuid::from_u128(7);
        for message in [LiveMessage::Watch { org }, LiveMessage::Events { org, ids: ids(3) }] {
            assert_eq!(LiveMessage::decode(&message.encode()), Some(message));
        }
        let one = LiveMessage::Events { org, ids: ids(1) }.encode();
        assert_eq!(one.len(), 2 + 32 + 33);
        for junk in [
            "",
            "w",
            "x 00000000000000000000000000000007",
            "e 00000000000000000000000000000007",
            "w nope",
            "e 00000000000000000000000000000007 nope",
            "w 00000000000000000000000000000007 extra",
        ] {
            assert_eq!(LiveMessage::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn a_backlog_takes_a_batch_when_empty_and_overflows_past_its_capacity() {
        let mut backlog = Backlog::new(3);
        assert_eq!(backlog.push(&ids(5)), Ok(()), "an empty backlog takes a whole batch");
        assert_eq!(backlog.take(2), ids(2));
        assert_eq!(backlog.len(), 3);
        assert_eq!(backlog.push(&ids(1)), Err(Overflow), "3 + 1 > 3");
        assert!(backlog.is_empty(), "an overflowed backlog keeps nothing");
        assert_eq!(backlog.push(&ids(2)), Ok(()));
        assert_eq!(backlog.push(&ids(1)), Ok(()), "2 + 1 = 3 fits");
        assert_eq!(backlog.take(10), [ids(2), ids(1)].concat());
        assert!(backlog.take(10).is_empty());
    }

    #[test]
    fn end_reasons_are_snake_case() {
        let names: Vec<_> = [
            EndReason::Expired,
            EndReason::TooSlow,
            EndReason::Shutdown,
            EndReason::Unavailable,
        ]
        .map(EndReason::as_str)
        .into();
        assert_eq!(names, ["expired", "too_slow", "shutdown", "unavailable"]);
    }

    #[test]
    fn tickets_are_stored_by_digest_and_checked_for_shape() {
        let grant = TicketGrant {
            user_id: Uuid::from_u128(1),
            org_id: Uuid::from_u128(2),
        };
        assert_eq!(TicketGrant::decode(&grant.encode()), Some(grant));
        assert_eq!(TicketGrant::decode("x y"), None);
        let secret = new_ticket();
        assert!(looks_like_ticket(&secret), "{secret}");
        assert_ne!(new_ticket(), secret);
        assert!(!looks_like_ticket(&secret[..secret.len() - 1]));
        assert!(!looks_like_ticket(&secret.replace("mpt_", "mpx_")));
        assert!(!looks_like_ticket(&format!("{TICKET_PREFIX}{}", "zz".repeat(32))));
        let digest = ticket_digest(&secret);
        assert_eq!(digest.len(), 64);
        assert!(!digest.contains(&secret[4..]));
        // SHA-256 of the empty string, the usual check that the hash is what it says.
        assert_eq!(
            ticket_digest(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
