//! Upcasting hook: turns an older `(event_type, schema_version, payload)` into the current
//! shape before decoding, so folds only ever see current payloads. Recorded events are never
//! rewritten in the ledger; upcasting happens on read.

use serde_json::Value;

/// Returns the event type and payload in the current schema. Schema version 1 is current for
/// every type (the reconciliation events of `reconcile_events` were born at 1); add a match
/// arm here (and a test) when a payload shape changes.
pub fn upcast(event_type: &str, schema_version: u32, payload: Value) -> (String, Value) {
    match (event_type, schema_version) {
        // v0 CRM payloads (pre-release sample files) used Salesforce field names.
        ("CrmAccountUpserted", 0) => (
            "CrmAccountUpserted".to_string(),
            rename(payload, &[("Id", "account_id"), ("Name", "name")]),
        ),
        _ => (event_type.to_string(), payload),
    }
}

/// Whether `upcast` rewrites this event: one pattern per arm of `upcast` above. Everything
/// else decodes from the recorded payload as it is, without a copy.
pub fn needs_upcast(event_type: &str, schema_version: u32) -> bool {
    matches!((event_type, schema_version), ("CrmAccountUpserted", 0))
}

fn rename(mut payload: Value, pairs: &[(&str, &str)]) -> Value {
    if let Value::Object(map) = &mut payload {
        for (from, to) in pairs {
            if let Some(v) = map.remove(*from) {
                map.entry(to.to_string()).or_insert(v);
            }
        }
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v0_account_payload_is_upcast_to_current_names() {
        let (t, p) = upcast(
            "CrmAccountUpserted",
            0,
            json!({"Id": "001", "Name": "Acme"}),
        );
        assert_eq!(t, "CrmAccountUpserted");
        assert_eq!(p, json!({"account_id": "001", "name": "Acme"}));
    }

    #[test]
    fn needs_upcast_names_exactly_the_rewritten_events() {
        let v0 = json!({"Id": "001", "Name": "Acme"});
        assert!(needs_upcast("CrmAccountUpserted", 0));
        assert_ne!(upcast("CrmAccountUpserted", 0, v0.clone()).1, v0);
        for (t, v) in [
            ("CrmAccountUpserted", 1),
            ("BillingAccountCreated", 0),
            ("X", 1),
        ] {
            assert!(!needs_upcast(t, v), "{t} v{v}");
            assert_eq!(upcast(t, v, v0.clone()), (t.to_string(), v0.clone()));
        }
    }

    #[test]
    fn current_payloads_pass_through() {
        let p = json!({"x": 1});
        assert_eq!(upcast("Anything", 1, p.clone()).1, p);
    }
}
