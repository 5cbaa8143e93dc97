//! The record a DynamoDB Streams event source mapping sends to its on-failure destination
//! when it discards a batch (retries exhausted or records too old): which function gave up,
//! after how many invocations, and the shard/sequence range of the discarded records. The
//! records themselves are not in it; the consumer reads them back from the stream.

use crate::projector::names::view_name;
use serde::Deserialize;

/// `requestContext` + `DDBStreamBatchInfo` of an on-failure destination record, as Lambda
/// documents it (other fields, `responseContext`, `timestamp`, `version`, are not needed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GiveUpRecord {
    #[serde(rename = "requestContext")]
    pub request_context: RequestContext,
    #[serde(rename = "DDBStreamBatchInfo")]
    pub batch: StreamBatchInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    /// `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
    pub function_arn: String,
    /// `RetryAttemptsExhausted` or `RecordAgeExceeded`.
    #[serde(default)]
    pub condition: String,
    /// Invocations of the function with this batch before it was discarded.
    #[serde(default)]
    pub approximate_invoke_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamBatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    pub stream_arn: String,
    #[serde(default)]
    pub batch_size: u32,
}

/// Why a message is not a give-up record this consumer can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message body is not an on-failure destination record of a DynamoDB stream: {0}")]
    Shape(String),
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

impl GiveUpRecord {
    /// Parses an SQS message body, checking the fields the consumer relies on.
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        let record: GiveUpRecord =
            serde_json::from_str(body).map_err(|e| MessageError::Shape(e.to_string()))?;
        let b = &record.batch;
        for (field, value) in [
            ("DDBStreamBatchInfo.shardId", &b.shard_id),
            (
                "DDBStreamBatchInfo.startSequenceNumber",
                &b.start_sequence_number,
            ),
            (
                "DDBStreamBatchInfo.endSequenceNumber",
                &b.end_sequence_number,
            ),
            ("DDBStreamBatchInfo.streamArn", &b.stream_arn),
        ] {
            if value.trim().is_empty() {
                return Err(MessageError::Field {
                    field,
                    reason: "must not be empty".into(),
                });
            }
        }
        for (field, value) in [
            (
                "DDBStreamBatchInfo.startSequenceNumber",
                &b.start_sequence_number,
            ),
            (
                "DDBStreamBatchInfo.endSequenceNumber",
                &b.end_sequence_number,
            ),
        ] {
            if !value.bytes().all(|c| c.is_ascii_digit()) {
                return Err(MessageError::Field {
                    field,
                    reason: format!("{value:?} is not a sequence number (decimal digits)"),
                });
            }
        }
        if !sequence_le(&b.start_sequence_number, &b.end_sequence_number) {
            return Err(MessageError::Field {
                field: "DDBStreamBatchInfo.endSequenceNumber",
                reason: "is before startSequenceNumber".into(),
            });
        }
        Ok(record)
    }

    /// The function that gave up: the name in `functionArn`, without a version/alias qualifier.
    pub fn function_name(&self) -> Result<&str, MessageError> {
        let arn = &self.request_context.function_arn;
        arn.split_once(":function:")
            .map(|(_, rest)| rest.split(':').next().unwrap_or(rest))
            .filter(|name| !name.is_empty())
            .ok_or_else(|| MessageError::Field {
                field: "requestContext.functionArn",
                reason: format!("{arn:?} is not a Lambda function ARN"),
            })
    }

    /// The projection (its view name, `account-sync`) whose projector gave up: projector
    /// functions are named `<prefix><deployed projection name>` (template.yaml:
    /// `${Prefix}-projector-account`, ...), so the name without `function_prefix` names it.
    pub fn projection(&self, function_prefix: &str) -> Result<&'static str, MessageError> {
        let name = self.function_name()?;
        name.strip_prefix(function_prefix)
            .and_then(view_name)
            .ok_or_else(|| MessageError::Field {
                field: "requestContext.functionArn",
                reason: format!(
                    "function {name:?} is not a projector (expected {function_prefix}<projection>)"
                ),
            })
    }
}

/// Whether stream sequence number `a` is at or before `b`. They are decimal strings of up
/// to 40 digits, beyond any integer type: compare by length, then by digits.
pub fn sequence_le(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    (a.len(), a) <= (b.len(), b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(function: &str, start: &str, end: &str) -> String {
        serde_json::json!({
            "requestContext": {
                "requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
                "functionArn": function,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": 11
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2026-12-05T00:13:49.717Z",
            "DDBStreamBatchInfo": {
                "shardId": "shardId-00000001573689847184-864758bb",
                "startSequenceNumber": start,
                "endSequenceNumber": end,
                "approximateArrivalOfFirstRecord": "2026-12-05T00:13:19Z",
                "approximateArrivalOfLastRecord": "2026-12-05T00:13:19Z",
                "batchSize": 2,
                "streamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/sl-events/stream/2026-12-05T00:00:00.000"
            }
        })
        .to_string()
    }

    #[test]
    fn parses_the_documented_record_and_names_the_projection() {
        let record = GiveUpRecord::parse(&body(
            "arn:aws:lambda:us-east-1:123456789012:function:sl-projector-order:live",
            "800000000003126276362",
            "800000000003126276370",
        ))
        .unwrap();
        assert_eq!(record.request_context.approximate_invoke_count, 11);
        assert_eq!(record.function_name().unwrap(), "sl-projector-order");
        assert_eq!(record.projection("sl-projector-").unwrap(), "order-sync");
        let err = record.projection("other-projector-").unwrap_err();
        assert!(
            err.to_string().contains("requestContext.functionArn"),
            "{err}"
        );
    }

    #[test]
    fn bad_ranges_name_the_field() {
        let err =
            GiveUpRecord::parse(&body("arn:aws:lambda:r:1:function:f", "9", "10x")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("DDBStreamBatchInfo.endSequenceNumber"),
            "{err}"
        );
        let err =
            GiveUpRecord::parse(&body("arn:aws:lambda:r:1:function:f", "100", "99")).unwrap_err();
        assert!(
            err.to_string().contains("before startSequenceNumber"),
            "{err}"
        );
        let err = GiveUpRecord::parse("{\"Records\": []}").unwrap_err();
        assert!(matches!(err, MessageError::Shape(_)), "{err}");
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(sequence_le("99", "100"));
        assert!(!sequence_le("100", "99"));
        assert!(sequence_le("100", "100"));
        assert!(sequence_le("0100", "101"));
    }
}
