//! CloudWatch Embedded Metric Format: one JSON line on stdout per flush, which CloudWatch
//! Logs turns into metrics without an API call from the function. It only formats and
//! prints; what to count is the handler's business.

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "SyncLedger";

/// A set of counters sharing one set of dimensions, printed as one EMF line.
#[derive(Debug, Clone)]
pub struct Metrics {
    dimensions: Vec<(String, String)>,
    counts: Vec<(String, u64)>,
}

impl Metrics {
    pub fn new(dimensions: &[(&str, &str)]) -> Self {
        Self {
            dimensions: dimensions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            counts: Vec::new(),
        }
    }

    /// Adds `n` to the counter `name` (created at zero).
    pub fn count(&mut self, name: &str, n: u64) {
        match self.counts.iter_mut().find(|(k, _)| k == name) {
            Some((_, total)) => *total += n,
            None => self.counts.push((name.to_string(), n)),
        }
    }

    /// The EMF document for the counters so far, stamped `timestamp_ms`.
    pub fn to_emf(&self, timestamp_ms: i64) -> Value {
        let mut doc = Map::new();
        doc.insert(
            "_aws".to_string(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [self.dimensions.iter().map(|(k, _)| k).collect::<Vec<_>>()],
                    "Metrics": self.counts.iter()
                        .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
                        .collect::<Vec<_>>(),
                }]
            }),
        );
        for (k, v) in &self.dimensions {
            doc.insert(k.clone(), json!(v));
        }
        for (name, n) in &self.counts {
            doc.insert(name.clone(), json!(n));
        }
        Value::Object(doc)
    }

    /// Prints the EMF line to stdout (where Lambda's log capture picks it up).
    pub fn flush(&self) {
        println!("{}", self.to_emf(chrono::Utc::now().timestamp_millis()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_dimensions_become_one_emf_document() {
        let mut m = Metrics::new(&[("Function", "ingest"), ("Channel", "sqs")]);
        m.count("EventsAppended", 2);
        m.count("EventsAppended", 1);
        m.count("RecordsRejected", 0);
        let doc = m.to_emf(1_000);
        assert_eq!(doc["EventsAppended"], 3);
        assert_eq!(doc["Channel"], "sqs");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][1],
            "Channel"
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Name"],
            "RecordsRejected"
        );
    }
}
