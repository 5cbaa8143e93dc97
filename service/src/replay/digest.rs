//! Digests and diffs of a projection's view items: what "the rebuilt views are identical"
//! means. Only `pk`, `last_version` and `state` count — `revision` and `updated_at` record
//! how an item was written, not what it holds. The digest is a sum of per-item hashes, so it
//! streams over a store's pages and partitions' digests combine into the whole's.

use super::ReplayError;
use crate::views::{ViewRow, ViewStore};
use projections::Partition;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// `pk` -> canonical JSON of `{last_version, state}`, sorted by `pk`.
pub type Snapshot = BTreeMap<String, String>;

/// Items per page when a digest streams a projection's items from the store.
const DIGEST_PAGE: usize = 1000;

/// The digest of a set of view items: the number of items and the sum, modulo 2^256, of
/// every item's sha256 over `pk \t canonical-json`. A sum does not depend on the order the
/// items are read in, so a digest streams over any store's scan order with bounded memory,
/// and the digests of disjoint partitions add up to the digest of the whole (`combine`).
/// Equal sets of items give equal digests; a changed, missing or extra item changes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ViewDigest {
    pub items: usize,
    /// The 256-bit sum, 64 hex digits.
    pub sha256_sum: String,
}

impl ViewDigest {
    pub fn of(snapshot: &Snapshot) -> Self {
        let mut sum = DigestSum::default();
        for (pk, json) in snapshot {
            sum.add(pk, json);
        }
        sum.finish()
    }

    /// The digest of the union of two disjoint sets of items (partitions of one projection).
    pub fn combine(&self, other: &ViewDigest) -> ViewDigest {
        let mut sum = DigestSum::parse(self);
        sum.combine(&DigestSum::parse(other));
        sum.finish()
    }

    /// A digest printed in full (64 hex digits and the item count), e.g. by a partition.
    pub fn from_hex(hex: &str, items: usize) -> Option<Self> {
        let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| Self {
            items,
            sha256_sum: hex.to_ascii_lowercase(),
        })
    }

    /// The first 12 hex digits: enough to tell digests apart on a screen.
    pub fn short(&self) -> &str {
        &self.sha256_sum[..12]
    }
}

impl fmt::Display for ViewDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256-sum:{} ({} items)", self.short(), self.items)
    }
}

/// A `ViewDigest` being summed up, item by item or partition by partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DigestSum {
    items: usize,
    /// Big-endian 256-bit sum, most significant limb first.
    sum: [u64; 4],
}

impl DigestSum {
    /// Adds one item (`pk` and the canonical JSON of what it holds).
    pub fn add(&mut self, pk: &str, held_json: &str) {
        let mut hasher = Sha256::new();
        hasher.update(pk.as_bytes());
        hasher.update(b"\t");
        hasher.update(held_json.as_bytes());
        let hash: [u8; 32] = hasher.finalize().into();
        let mut limbs = [0u64; 4];
        for (limb, bytes) in limbs.iter_mut().zip(hash.chunks_exact(8)) {
            *limb = u64::from_be_bytes(bytes.try_into().expect("chunks of 8"));
        }
        self.add_limbs(&limbs);
        self.items += 1;
    }

    /// Adds a disjoint set's sum.
    pub fn combine(&mut self, other: &DigestSum) {
        self.add_limbs(&other.sum);
        self.items += other.items;
    }

    fn add_limbs(&mut self, other: &[u64; 4]) {
        let mut carry = false;
        for (mine, theirs) in self.sum.iter_mut().zip(other).rev() {
            let (s1, c1) = mine.overflowing_add(*theirs);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *mine = s2;
            carry = c1 || c2;
        }
    }

    fn parse(digest: &ViewDigest) -> Self {
        let mut sum = [0u64; 4];
        for (i, limb) in sum.iter_mut().enumerate() {
            // `ViewDigest` only holds 64 hex digits (built here or checked by `from_hex`).
            *limb = u64::from_str_radix(&digest.sha256_sum[i * 16..(i + 1) * 16], 16)
                .expect("a digest holds 64 hex digits");
        }
        Self {
            items: digest.items,
            sum,
        }
    }

    pub fn finish(&self) -> ViewDigest {
        ViewDigest {
            items: self.items,
            sha256_sum: self.sum.iter().map(|l| format!("{l:016x}")).collect(),
        }
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
        .map(|item| (item.key.pk(), held_json(&item)))
        .collect())
}

/// What an item holds, as the digest sees it: canonical JSON of `{last_version, state}`.
fn held_json(item: &ViewRow) -> String {
    let held = serde_json::json!({
        "last_version": item.last_version,
        "state": item.state,
    });
    canonical_json(&held)
}

/// The digest of the items of `projection` in `views` (its namespace) that `partition` owns,
/// streamed a page at a time: memory stays bounded whatever the number of items.
pub async fn stream_digest(
    views: &dyn ViewStore,
    projection: &str,
    partition: Partition,
) -> Result<ViewDigest, ReplayError> {
    let mut sum = DigestSum::default();
    let mut after = None;
    loop {
        let page = views
            .list_page(projection, after.take(), DIGEST_PAGE)
            .await?;
        for item in &page.items {
            if partition.owns(item.key.projection(), item.key.key()) {
                sum.add(&item.key.pk(), &held_json(item));
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(sum.finish()),
        }
    }
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

    #[test]
    fn digests_of_disjoint_parts_combine_into_the_digest_of_the_whole() {
        let all: Snapshot = (0..50)
            .map(|n| (format!("p#{n:02}"), format!("{{\"n\":{n}}}")))
            .collect();
        let whole = ViewDigest::of(&all);
        let mut parts = [DigestSum::default(); 3];
        // Any split and any order: a sum does not care.
        for (i, (pk, json)) in all.iter().rev().enumerate() {
            parts[i * 7 % 3].add(pk, json);
        }
        let combined = parts
            .iter()
            .fold(ViewDigest::of(&Snapshot::new()), |acc, p| {
                acc.combine(&p.finish())
            });
        assert_eq!(combined, whole);
        assert_eq!(combined.items, 50);
        assert_eq!(
            ViewDigest::from_hex(&whole.sha256_sum, 50),
            Some(whole.clone())
        );
        // One changed item changes the digest.
        let mut changed = all.clone();
        changed.insert("p#07".to_string(), "{\"n\":8}".to_string());
        assert_ne!(ViewDigest::of(&changed), whole);
    }

    #[test]
    fn the_sum_carries_across_limbs_and_wraps() {
        let hex = |n: u64| format!("{n:064x}");
        let low_max = ViewDigest::from_hex(&hex(u64::MAX), 1).unwrap();
        let one = ViewDigest::from_hex(&hex(1), 1).unwrap();
        let carried = low_max.combine(&one);
        assert_eq!(
            carried.sha256_sum,
            format!("{}1{}", "0".repeat(47), "0".repeat(16))
        );
        assert_eq!(carried.items, 2);
        let max = ViewDigest::from_hex(&"f".repeat(64), 1).unwrap();
        assert_eq!(max.combine(&one).sha256_sum, "0".repeat(64), "modulo 2^256");
    }
}
