//! Raw input as operators and queues hand it over: an SQS Lambda event (`Records`), an
//! `aws sqs receive-message` dump (`Messages`), a single SQS message, an EventBridge event or
//! a Zuora callout body. `split_raw` finds the records in one input; `map_body` maps one
//! record's body. Both are pure; appending is the caller's job.

use super::{eventbridge, zuora, Mapped, Rejection};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// One record found in a raw input: its body bytes and, when the input named it, its id
/// (SQS `messageId`) for reporting.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    pub id: Option<String>,
    pub body: String,
}

/// The records in one raw input. Input that is not JSON, or JSON of no known envelope, is
/// returned as a single record so `map_body` rejects it with the raw bytes kept.
pub fn split_raw(input: &str) -> Vec<RawRecord> {
    let whole = || {
        vec![RawRecord {
            id: None,
            body: input.to_string(),
        }]
    };
    let Ok(value) = serde_json::from_str::<Value>(input) else {
        return whole();
    };
    let messages = value
        .get("Records")
        .or_else(|| value.get("Messages"))
        .and_then(Value::as_array);
    match messages {
        Some(list) => list.iter().map(sqs_message).collect(),
        None if is_sqs_message(&value) => vec![sqs_message(&value)],
        None => whole(),
    }
}

fn is_sqs_message(value: &Value) -> bool {
    (value.get("messageId").is_some() && value.get("body").is_some())
        || (value.get("MessageId").is_some() && value.get("Body").is_some())
}

fn sqs_message(message: &Value) -> RawRecord {
    let text = |k1: &str, k2: &str| {
        message
            .get(k1)
            .or_else(|| message.get(k2))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match text("body", "Body") {
        Some(body) => RawRecord {
            id: text("messageId", "MessageId"),
            body,
        },
        // A message without a body cannot be mapped; keep the whole message as the raw.
        None => RawRecord {
            id: text("messageId", "MessageId"),
            body: message.to_string(),
        },
    }
}

/// Map one record body: an EventBridge event or a Zuora callout body.
pub fn map_body(body: &str, now: DateTime<Utc>) -> Mapped {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| Rejection::whole(format!("body is not JSON: {e}")))?;
    if eventbridge::looks_like(&value) {
        eventbridge::map_event(&value, now)
    } else if zuora::looks_like(&value) {
        zuora::map_callout(&value, None, now)
    } else {
        Err(Rejection::whole(
            "unknown shape: neither an EventBridge event (detail-type, source) nor a Zuora callout (eventId, eventType)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_events_and_receive_message_dumps_split_into_bodies() {
        let lambda =
            r#"{"Records":[{"messageId":"m1","body":"{}"},{"messageId":"m2","body":"x"}]}"#;
        let dump = r#"{"Messages":[{"MessageId":"m1","ReceiptHandle":"r","Body":"{}"}]}"#;
        assert_eq!(split_raw(lambda).len(), 2);
        assert_eq!(split_raw(dump)[0].id.as_deref(), Some("m1"));
        assert_eq!(split_raw("not json")[0].body, "not json");
        assert_eq!(split_raw(r#"{"detail-type":"x"}"#).len(), 1);
    }

    #[test]
    fn bodies_of_unknown_shape_or_not_json_are_rejections() {
        assert!(map_body("{", Utc::now())
            .unwrap_err()
            .reason
            .contains("not JSON"));
        assert!(map_body("{\"a\":1}", Utc::now())
            .unwrap_err()
            .reason
            .contains("unknown shape"));
    }
}
