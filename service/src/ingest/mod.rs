//! Pure mapping of raw source events (Salesforce via EventBridge, Zuora callouts) to ledger
//! envelopes, or to a typed `Rejection` naming the field and the reason. No I/O here: only
//! `append` touches the `EventLog` port; the Lambda handler and the CLI feed bytes in
//! (`decode` reads the CLI's input lines).

pub mod append;
pub mod basic_auth;
pub mod decode;
pub mod eventbridge;
pub mod fields;
pub mod raw;
pub mod rejection;
pub mod salesforce;
pub mod signature;
pub mod zuora;

use projections::{CorrelationId, NewEvent};

pub use append::{record, Ingested};
pub use raw::{map_body, split_raw, RawRecord};
pub use rejection::{rejection_event, Rejection, RAW_CAP};

/// Which entry point saw a record; recorded in `IngestRejected.channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sqs,
    EventBridge,
    BillingCallout,
    Cli,
    /// A Lambda invocation whose shape matched none of the triggers above.
    Invoke,
}

impl Channel {
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Sqs => "sqs",
            Channel::EventBridge => "eventbridge",
            Channel::BillingCallout => "billing-callout",
            Channel::Cli => "cli",
            Channel::Invoke => "invoke",
        }
    }
}

/// The events one source record maps to (usually one; a Salesforce change event naming
/// several records maps to one per record).
pub type Mapped = Result<Vec<NewEvent>, Rejection>;

/// The correlation id a source carried, else a fresh one: the trace starts here.
pub(crate) fn correlation_or_new(carried: Option<&str>) -> CorrelationId {
    carried
        .and_then(|text| CorrelationId::from_source_text(text).ok())
        .unwrap_or_default()
}

/// Stream ids use the source's id verbatim; a stream id cannot be built from an id that is
/// empty or has control characters, which is the source's fault, so it becomes a rejection.
pub(crate) fn entity_stream(
    source: projections::Source,
    entity: &str,
    id: &str,
    field: &str,
) -> Result<projections::StreamId, Rejection> {
    projections::StreamId::for_entity(source, entity, id)
        .map_err(|e| Rejection::new(field, e.to_string()))
}

pub(crate) fn source_event_id(
    value: String,
    field: &str,
) -> Result<projections::SourceEventId, Rejection> {
    projections::SourceEventId::parse(value).map_err(|e| Rejection::new(field, e.to_string()))
}
