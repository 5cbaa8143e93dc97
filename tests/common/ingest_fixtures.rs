//! The ingest fixtures (tests/fixtures, see its README) and the Lambda trigger envelopes the
//! ingest tests wrap them in, built from the real-shaped AWS samples there.

use serde_json::{json, Value};
use sync_ledger::ingest::signature::CalloutSecret;

/// A fixture file's text, by path under tests/fixtures.
pub fn fixture(path: &str) -> String {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// An SQS Lambda event (records shaped like `aws/sqs_record.json`) carrying `bodies` under
/// the given message ids.
pub fn sqs_event(bodies: &[(&str, String)]) -> Value {
    let template: Value = serde_json::from_str(&fixture("aws/sqs_record.json")).unwrap();
    let records: Vec<Value> = bodies
        .iter()
        .map(|(id, body)| {
            let mut r = template.clone();
            r["messageId"] = json!(id);
            r["body"] = json!(body);
            r
        })
        .collect();
    json!({ "Records": records })
}

/// A Function URL request (`aws/function_url_request.json`) with `body` and extra headers.
pub fn callout_request(body: &str, headers: &[(&str, String)]) -> Value {
    let mut r: Value = serde_json::from_str(&fixture("aws/function_url_request.json")).unwrap();
    r["body"] = json!(body);
    for (k, v) in headers {
        r["headers"][*k] = json!(v);
    }
    r
}

/// The `x-zuora-signature` header for `body` signed with `secret` at unix time `at`.
pub fn signature_header(secret: &str, body: &str, at: i64) -> Vec<(&'static str, String)> {
    let value = CalloutSecret::new(secret)
        .unwrap()
        .sign(body.as_bytes(), at);
    vec![("x-zuora-signature", value)]
}
