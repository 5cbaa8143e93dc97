//! Identifier newtypes. Each one is parsed once at the edge, so code past the edge cannot
//! hold an empty stream id or a correlation id that is not a UUID.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{field}: must not be empty")]
    Empty { field: &'static str },
    #[error("{field}: {reason} (got {value:?})")]
    Invalid {
        field: &'static str,
        reason: &'static str,
        value: String,
    },
}

/// Maximum length of a stream id / source event id. DynamoDB partition keys may be 2048
/// bytes; we keep well under so the dedupe marker key (`dedupe#<source>#<id>`) fits too.
pub const MAX_ID_LEN: usize = 1024;

fn check_text(field: &'static str, value: &str) -> Result<(), IdError> {
    if value.trim().is_empty() {
        return Err(IdError::Empty { field });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::Invalid {
            field,
            reason: "longer than 1024 bytes",
            value: value.chars().take(64).collect(),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(IdError::Invalid {
            field,
            reason: "contains control characters",
            value: value.escape_debug().to_string(),
        });
    }
    Ok(())
}

/// `crm-account-001Dn00000ABC`, `billing-subscription-A-S0001`, `system-token-crm`, ...
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        check_text("stream_id", &value)?;
        if value.starts_with("dedupe#") || value.starts_with("meta#") {
            return Err(IdError::Invalid {
                field: "stream_id",
                reason: "the prefixes dedupe# and meta# are reserved for ledger bookkeeping",
                value,
            });
        }
        Ok(Self(value))
    }

    /// `<source>-<entity>-<id>`, the naming every adapter and projector uses.
    pub fn for_entity(source: Source, entity: &str, id: &str) -> Result<Self, IdError> {
        Self::parse(format!("{}-{}-{}", source.as_str(), entity, id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<StreamId> for String {
    fn from(value: StreamId) -> Self {
        value.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The idempotency key a source gives its event (Salesforce ReplayId/EventUuid, Zuora event
/// id, EventBridge id, ...). Unique per `Source`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceEventId(String);

impl SourceEventId {
    pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        check_text("source_event_id", &value)?;
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SourceEventId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<SourceEventId> for String {
    fn from(value: SourceEventId) -> Self {
        value.0
    }
}

impl fmt::Display for SourceEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh UUID v7 from the clock: time-ordered, so ids sort roughly by creation.
            /// For the edge only (ingest, the CLI, the rotator, redrive's run id): no fold or
            /// decision in this crate calls it, so they stay functions of their inputs.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub fn parse(value: &str) -> Result<Self, IdError> {
                Uuid::parse_str(value.trim())
                    .map(Self)
                    .map_err(|_| IdError::Invalid {
                        field: $field,
                        reason: "not a UUID",
                        value: value.chars().take(64).collect(),
                    })
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// Unique id of one recorded event: a UUID v7 for what the edge records (inbound events,
    /// audit events), a UUID v5 of the dedupe key for what the core derives ([`EventId::derived`]).
    EventId,
    "event_id"
);
uuid_id!(
    /// Trace id shared by an inbound event and everything it caused.
    CorrelationId,
    "correlation_id"
);

/// Namespace of the UUID v5 event ids derived from a dedupe key. Fixed forever: changing it
/// would give a re-run decision different ids from the ones already recorded.
const DERIVED_EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0xb9c0_bfe8_1494_4c07_9a8c_986b_34a1_ca37);

impl EventId {
    /// The id of an event the core makes rather than receives (an outcome event): a UUID v5
    /// of its dedupe key `(source, source_event_id)`. The ledger records one event per dedupe
    /// key, so deriving the id from that key alone means a repeated decision proposes the
    /// very event already recorded (same id, same key), and two different events never share
    /// an id (SQLite's `UNIQUE(event_id)` would refuse the second).
    pub fn derived(source: Source, source_event_id: &SourceEventId) -> Self {
        let name = format!("{}:{}", source.as_str(), source_event_id.as_str());
        Self(Uuid::new_v5(&DERIVED_EVENT_ID_NAMESPACE, name.as_bytes()))
    }
}

impl CorrelationId {
    /// A correlation id carried by a source may not be a UUID (Salesforce lets users put any
    /// text in `Correlation_Id__c`). We keep the trace intact by mapping such text to a
    /// deterministic UUID v5, so the same source value always yields the same id.
    pub fn from_source_text(value: &str) -> Result<Self, IdError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(IdError::Empty {
                field: "correlation_id",
            });
        }
        Ok(Self::parse(trimmed)
            .unwrap_or_else(|_| Self(Uuid::new_v5(&Uuid::NAMESPACE_OID, trimmed.as_bytes()))))
    }
}

/// Which system an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Crm,
    Billing,
    System,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Crm => "crm",
            Source::Billing => "billing",
            Source::System => "system",
        }
    }

    pub fn parse(value: &str) -> Result<Self, IdError> {
        match value {
            "crm" => Ok(Source::Crm),
            "billing" => Ok(Source::Billing),
            "system" => Ok(Source::System),
            other => Err(IdError::Invalid {
                field: "source",
                reason: "must be one of crm, billing, system",
                value: other.chars().take(64).collect(),
            }),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_rejects_empty_and_reserved_prefixes() {
        assert_eq!(
            StreamId::parse("  "),
            Err(IdError::Empty { field: "stream_id" })
        );
        assert!(StreamId::parse("dedupe#crm#1").is_err());
        assert!(StreamId::parse("meta#x").is_err());
        assert_eq!(
            StreamId::for_entity(Source::Crm, "account", "001")
                .unwrap()
                .as_str(),
            "crm-account-001"
        );
    }

    #[test]
    fn correlation_id_from_free_text_is_deterministic() {
        let a = CorrelationId::from_source_text("order-run-42").unwrap();
        let b = CorrelationId::from_source_text("order-run-42").unwrap();
        assert_eq!(a, b);
        let u = CorrelationId::new();
        assert_eq!(CorrelationId::from_source_text(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn derived_event_ids_depend_on_the_whole_dedupe_key_and_nothing_else() {
        let key = SourceEventId::parse("0193a1b2-0000-7000-8000-000000000001:step").unwrap();
        let id = EventId::derived(Source::System, &key);
        assert_eq!(id, EventId::derived(Source::System, &key));
        assert_eq!(id.as_uuid().get_version_num(), 5);
        let other_key =
            SourceEventId::parse("0193a1b2-0000-7000-8000-000000000001:step:failed").unwrap();
        assert_ne!(id, EventId::derived(Source::System, &other_key));
        assert_ne!(id, EventId::derived(Source::Crm, &key));
    }

    #[test]
    fn ids_round_trip_through_json() {
        let s: StreamId = serde_json::from_str("\"crm-account-1\"").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"crm-account-1\"");
        assert!(serde_json::from_str::<StreamId>("\"\"").is_err());
        assert!(serde_json::from_str::<Source>("\"erp\"").is_err());
    }
}
