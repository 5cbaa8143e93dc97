//! Digests and diffs of a projection's view items: what "the rebuilt views are identical"
//! means. Only `pk`, `last_version` and `state` count — `revision` and `updated_at` record
//! how an item was written, not what it holds. Pure over what the store returned.

use super::ReplayError;
use crate::views::ViewStore;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// `pk` -> canonical JSON of `{last_version, state}`, sorted by `pk`.
pub type Snapshot = BTreeMap<String, String>;

/// The digest of one projection's items.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ViewDigest {
    pub items: usize,
    /// Hex sha256 over every `pk \t canonical-json \n`, in `pk` order.
    pub sha256: String,
}

impl ViewDigest {
    pub fn of(snapshot: &Snapshot) -> Self {
        let mut hasher = Sha256::new();
        for (pk, json) in snapshot {
            hasher.update(pk.as_bytes());
            hasher.update(b"\t");
            hasher.update(json.as_bytes());
            hasher.update(b"\n");
        }
        Self {
            items: snapshot.len(),
            sha256: hex::encode(hasher.finalize()),
        }
    }

    /// The first 12 hex digits: enough to tell digests apart on a screen.
    pub fn short(&self) -> &str {
        &self.sha256[..12]
    }
}

impl fmt::Display for ViewDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{} ({} items)", self.short(), self.items)
    }
}

/// JSON with object keys sorted at every level and no insignificant whitespace, so equal
/// values always print the same (stores and `preserve_order` keep keys in write order).
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let ordered: BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// The items of `projection` in `views` (its namespace), reduced to what they hold.
pub async fn snapshot(views: &dyn ViewStore, projection: &str) -> Result<Snapshot, ReplayError> {
    let items = views.list(projection).await?;
    Ok(items
        .into_iter()
        .map(|item| {
            let held = serde_json::json!({
                "last_version": item.last_version,
                "state": item.state,
            });
            (item.key.pk(), canonical_json(&held))
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    OnlyInLive,
    OnlyInRebuilt,
    Differs,
}

impl fmt::Display for DifferenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DifferenceKind::OnlyInLive => "only in the live views",
            DifferenceKind::OnlyInRebuilt => "missing from the live views",
            DifferenceKind::Differs => "differs",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    pub pk: String,
    pub kind: DifferenceKind,
}

/// Every key whose item is not the same in `live` and `rebuilt`, in `pk` order.
pub fn diff(live: &Snapshot, rebuilt: &Snapshot) -> Vec<Difference> {
    let mut out = Vec::new();
    for (pk, held) in live {
        match rebuilt.get(pk) {
            None => out.push(Difference {
                pk: pk.clone(),
                kind: DifferenceKind::OnlyInLive,
            }),
            Some(other) if other != held => out.push(Difference {
                pk: pk.clone(),
                kind: DifferenceKind::Differs,
            }),
            Some(_) => {}
        }
    }
    for pk in rebuilt.keys().filter(|pk| !live.contains_key(*pk)) {
        out.push(Difference {
            pk: pk.clone(),
            kind: DifferenceKind::OnlyInRebuilt,
        });
    }
    out.sort_by(|a, b| a.pk.cmp(&b.pk));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[{"d":1,"c":2}],"x":null}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":null,"y":[{"c":2,"d":1}]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[{"c":2,"d":1}]},"b":1}"#
        );
    }

    #[test]
    fn diff_names_missing_extra_and_changed_keys() {
        let live: Snapshot = [("p#a", "1"), ("p#b", "2"), ("p#c", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let rebuilt: Snapshot = [("p#b", "2"), ("p#c", "4"), ("p#d", "5")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let kinds: Vec<(String, DifferenceKind)> = diff(&live, &rebuilt)
            .into_iter()
            .map(|d| (d.pk, d.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("p#a".to_string(), DifferenceKind::OnlyInLive),
                ("p#c".to_string(), DifferenceKind::Differs),
                ("p#d".to_string(), DifferenceKind::OnlyInRebuilt),
            ]
        );
        assert_ne!(ViewDigest::of(&live), ViewDigest::of(&rebuilt));
    }
}
