//! One page of a query answer, as both systems page them (2,000 records at most): the
//! records, the size of the whole result, and how to ask for the next page.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    pub records: Vec<Map<String, Value>>,
    /// Records in the whole result (Salesforce `totalSize`, Zuora `size`).
    pub total: u64,
    /// Salesforce `nextRecordsUrl` / Zuora `queryLocator`; `None` on the last page.
    pub next: Option<String>,
}

impl QueryPage {
    /// Reads the records array and the paging fields of an answer.
    pub(crate) fn read(body: &Value, total_field: &str, next_field: &str) -> Option<Self> {
        let records = body["records"]
            .as_array()?
            .iter()
            .map(|r| r.as_object().cloned())
            .collect::<Option<Vec<_>>>()?;
        let done = body["done"].as_bool().unwrap_or(true);
        Some(Self {
            total: body[total_field].as_u64().unwrap_or(records.len() as u64),
            records,
            next: if done {
                None
            } else {
                body[next_field].as_str().map(str::to_string)
            },
        })
    }
}
