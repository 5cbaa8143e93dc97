//! The EventBridge event envelope (`version`, `id`, `detail-type`, `source`, `time`,
//! `detail`) and routing by `source`. Only the Salesforce partner event source is accepted;
//! anything else is a rejection, never a guess.

use super::fields::{timestamp, Obj};
use super::{salesforce, Mapped, Rejection};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// `aws.partner/salesforce.com/<orgId>/<channelId>`
pub const SALESFORCE_SOURCE_PREFIX: &str = "aws.partner/salesforce.com/";

/// The envelope fields every EventBridge event carries.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// EventBridge's own event id (stable across EventBridge retries of the same event).
    pub id: &'a str,
    pub detail_type: &'a str,
    pub source: &'a str,
    pub time: Option<DateTime<Utc>>,
    pub detail: &'a Value,
}

impl<'a> Envelope<'a> {
    pub fn parse(value: &'a Value) -> Result<Self, Rejection> {
        let root = Obj::at(value, "")?;
        let time = match root.get("time") {
            Some(t) => Some(timestamp(t, "time")?),
            None => None,
        };
        Ok(Self {
            id: root.str_req("id")?,
            detail_type: root.str_req("detail-type")?,
            source: root.str_req("source")?,
            time,
            detail: root
                .get("detail")
                .ok_or_else(|| Rejection::missing("detail"))?,
        })
    }
}

/// Whether a JSON value looks like an EventBridge event (as opposed to a Zuora callout or an
/// SQS envelope).
pub fn looks_like(value: &Value) -> bool {
    value.get("detail-type").is_some() && value.get("source").is_some()
}

/// Map one EventBridge event to ledger events.
pub fn map_event(value: &Value, now: DateTime<Utc>) -> Mapped {
    let envelope = Envelope::parse(value)?;
    match envelope.source.strip_prefix(SALESFORCE_SOURCE_PREFIX) {
        Some(org_and_channel) => salesforce::map(&envelope, org_and_channel, now),
        None => Err(Rejection::new(
            "source",
            format!(
                "{:?} is not an accepted event source (expected {SALESFORCE_SOURCE_PREFIX}<orgId>/<channelId>)",
                envelope.source
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_from_other_sources_are_rejected_naming_the_source() {
        let ev = json!({"version": "0", "id": "1", "detail-type": "Scheduled Event",
            "source": "aws.events", "time": "2026-11-26T10:00:00Z", "detail": {}});
        let r = map_event(&ev, Utc::now()).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("source"));
        assert!(r.reason.contains("aws.events"), "{r}");
    }

    #[test]
    fn an_envelope_without_detail_type_names_it() {
        let ev = json!({"id": "1", "source": "aws.partner/salesforce.com/00D/0YL", "detail": {}});
        let r = map_event(&ev, Utc::now()).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("detail-type"));
    }
}
