//! Reading source JSON field by field, so every failure names the full path of the field
//! (`detail.payload.Order_Id__c`) and the reason. Only reads; it never guesses a value.

use super::Rejection;
use projections::catalogue::Extra;
use serde_json::{Map, Value};

/// A JSON object at a known path.
#[derive(Debug, Clone, Copy)]
pub struct Obj<'a> {
    path: &'a str,
    map: &'a Map<String, Value>,
}

/// A JSON path under construction; owned so nested objects can borrow it.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Obj<'a> {
    /// `value` must be an object; `path` is how a rejection names it (`""` for the root).
    pub fn at(value: &'a Value, path: &'a str) -> Result<Self, Rejection> {
        match value {
            Value::Object(map) => Ok(Self { path, map }),
            other => Err(Rejection::new(
                if path.is_empty() { "(root)" } else { path },
                format!("must be a JSON object, got {}", kind(other)),
            )),
        }
    }

    pub fn path(&self, key: &str) -> String {
        join(self.path, key)
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A required, non-blank string.
    pub fn str_req(&self, key: &str) -> Result<&'a str, Rejection> {
        self.str_opt(key)?
            .ok_or_else(|| Rejection::missing(&self.path(key)))
    }

    /// An optional string; blank counts as absent, any other type is an error.
    pub fn str_opt(&self, key: &str) -> Result<Option<&'a str>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(Rejection::new(
                self.path(key),
                format!("must be a string, got {}", kind(other)),
            )),
        }
    }

    /// An optional number; Salesforce and Zuora both send numbers as JSON numbers or as
    /// decimal strings depending on the field type, so both are accepted.
    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| {
                Rejection::new(self.path(key), format!("must be a number, got {s:?}"))
            }),
            Some(other) => Err(Rejection::new(
                self.path(key),
                format!("must be a number, got {}", kind(other)),
            )),
        }
    }

    pub fn f64_req(&self, key: &str) -> Result<f64, Rejection> {
        self.f64_opt(key)?
            .ok_or_else(|| Rejection::missing(&self.path(key)))
    }

    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(Rejection::new(
                self.path(key),
                format!("must be true or false, got {}", kind(other)),
            )),
        }
    }

    pub fn array_opt(&self, key: &str) -> Result<Option<&'a Vec<Value>>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(Rejection::new(
                self.path(key),
                format!("must be an array, got {}", kind(other)),
            )),
        }
    }

    /// Every field except the ones the mapping modelled: what goes to a payload's `extra`,
    /// so nothing the source sent is dropped.
    pub fn extra(&self, modelled: &[&str]) -> Extra {
        self.map
            .iter()
            .filter(|(k, _)| !modelled.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parse a source timestamp (RFC 3339, or epoch milliseconds as Salesforce's
/// `commitTimestamp` is).
pub fn timestamp(value: &Value, path: &str) -> Result<chrono::DateTime<chrono::Utc>, Rejection> {
    match value {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| Rejection::new(path, format!("not an RFC 3339 timestamp ({e}): {s:?}"))),
        Value::Number(n) => n
            .as_i64()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .ok_or_else(|| Rejection::new(path, format!("not epoch milliseconds: {n}"))),
        other => Err(Rejection::new(
            path,
            format!("must be a timestamp, got {}", kind(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_full_path() {
        let v = json!({"a": 1, "s": " ", "n": "12.5"});
        let o = Obj::at(&v, "detail.payload").unwrap();
        assert_eq!(
            o.str_req("a").unwrap_err().field.as_deref(),
            Some("detail.payload.a")
        );
        assert_eq!(
            o.str_req("s").unwrap_err().reason,
            "is required but missing"
        );
        assert_eq!(o.f64_opt("n").unwrap(), Some(12.5));
        assert_eq!(o.extra(&["a"]).len(), 2);
    }

    #[test]
    fn timestamps_accept_rfc3339_and_epoch_millis() {
        let a = timestamp(&json!("2026-11-26T10:00:00.123Z"), "t").unwrap();
        let b = timestamp(&json!(1_795_687_200_123_i64), "t").unwrap();
        assert_eq!(a.timestamp_subsec_millis(), 123);
        assert_eq!(b.timestamp_subsec_millis(), 123);
        assert!(timestamp(&json!("yesterday"), "t").is_err());
    }
}
