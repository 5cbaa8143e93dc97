//! Partitions of a projection's view keys, so N replay processes can each rebuild a disjoint
//! share of the items in parallel. A key belongs to partition `fnv1a64(pk) % N`: FNV-1a is
//! stable across processes, builds and platforms (Rust's `DefaultHasher` is randomly seeded
//! per process, so two processes would disagree on who owns a key).

use std::fmt;
use std::str::FromStr;

/// Partition `index` of `count` (0-based: `0/4` .. `3/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Partition {
    index: u32,
    count: u32,
}

/// Why a partition was refused, for the CLI's `--partition` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition: {0}")]
pub struct PartitionError(String);

impl Partition {
    /// The whole key space: one partition of one.
    pub const ALL: Partition = Partition { index: 0, count: 1 };

    pub fn new(index: u32, count: u32) -> Result<Self, PartitionError> {
        if count == 0 {
            return Err(PartitionError(
                "the count must be at least 1 (e.g. 0/4)".to_string(),
            ));
        }
        if index >= count {
            return Err(PartitionError(format!(
                "index {index} must be below the count {count} (partitions are 0/{count} .. {}/{count})",
                count - 1
            )));
        }
        Ok(Self { index, count })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether this is the whole key space.
    pub fn is_all(&self) -> bool {
        self.count == 1
    }

    /// The partition owning the view item `<projection>#<key>`, among `count`.
    pub fn of(projection: &str, key: &str, count: u32) -> u32 {
        let mut hash = Fnv1a::new();
        hash.write(projection.as_bytes());
        hash.write(b"#");
        hash.write(key.as_bytes());
        // `count` >= 1 is checked by `new`; `max` keeps a direct call with 0 from dividing by 0.
        (hash.finish() % u64::from(count.max(1))) as u32
    }

    /// Whether this partition owns the view item `<projection>#<key>`.
    pub fn owns(&self, projection: &str, key: &str) -> bool {
        self.is_all() || Self::of(projection, key, self.count) == self.index
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Partition {
    type Err = PartitionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (index, count) = s
            .split_once('/')
            .ok_or_else(|| PartitionError(format!("{s:?} must be <index>/<count>, e.g. 0/4")))?;
        let number = |part: &str, what: &str| {
            part.trim().parse::<u32>().map_err(|e| {
                PartitionError(format!("{what} {part:?} in {s:?} is not a number: {e}"))
            })
        };
        Self::new(number(index, "index")?, number(count, "count")?)
    }
}

/// 64-bit FNV-1a (the published offset basis and prime).
struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        let hash = |s: &str| {
            let mut h = Fnv1a::new();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn every_key_has_exactly_one_owner_and_the_shares_are_even() {
        let parts: Vec<Partition> = (0..4).map(|i| Partition::new(i, 4).unwrap()).collect();
        let mut counts = [0usize; 4];
        for n in 0..4000 {
            let key = format!("crm#001Dn{n:013}");
            let owners: Vec<u32> = parts
                .iter()
                .filter(|p| p.owns("account-sync", &key))
                .map(Partition::index)
                .collect();
            assert_eq!(owners.len(), 1, "{key}");
            counts[owners[0] as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        assert!(Partition::ALL.owns("account-sync", "anything"));
    }

    #[test]
    fn bad_partitions_name_the_field_and_the_reason() {
        assert_eq!(
            "2/4".parse::<Partition>().unwrap(),
            Partition::new(2, 4).unwrap()
        );
        for (text, reason) in [
            ("4/4", "index 4 must be below the count 4"),
            ("1/0", "count must be at least 1"),
            ("x/4", "index \"x\""),
            ("3", "must be <index>/<count>"),
        ] {
            let err = text.parse::<Partition>().unwrap_err().to_string();
            assert!(err.starts_with("partition: "), "{err}");
            assert!(err.contains(reason), "{text}: {err}");
        }
    }
}
