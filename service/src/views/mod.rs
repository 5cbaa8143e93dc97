//! The `ViewStore` port: projection state items (`pk = <projection>#<key>`, each with the
//! last applied version per source stream) written under an optimistic condition, plus the
//! checkpoints of feed readers. Adapters live beside it; this module holds no storage code.

pub mod dynamodb;
pub mod sqlite;

use crate::config::StoreUrl;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use projections::StreamId;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Most writes one `commit` may carry: DynamoDB's TransactWriteItems limit.
pub const MAX_WRITES_PER_COMMIT: usize = 100;

/// Keys one batch read sends at once: DynamoDB's BatchGetItem limit.
pub const MAX_KEYS_PER_READ: usize = 100;

/// Largest view item we write: DynamoDB's 400 KB item limit less room for attribute names,
/// the namespace prefix and bookkeeping attributes. Both adapters enforce it, so a state that
/// could not be stored in production fails on the embedded store first.
pub const MAX_ITEM_BYTES: usize = 380 * 1024;

/// Projection names that address bookkeeping, not a projection.
const RESERVED_PROJECTIONS: &[&str] = &["checkpoint"];

/// Which set of views a store addresses. The live views use `ViewNamespace::live()`; a replay
/// `--into <name>` writes to `ViewNamespace::named(name)`, whose items never collide with
/// the live ones (they are stored under `<name>/` before the projection).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ViewNamespace(Option<String>);

impl ViewNamespace {
    pub fn live() -> Self {
        Self(None)
    }

    pub fn named(name: &str) -> Result<Self, ViewError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(ViewError::Invalid {
                field: "namespace",
                reason: format!("{name:?} must be 1-64 characters [A-Za-z0-9_.-]"),
            });
        }
        Ok(Self(Some(name.to_string())))
    }

    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// What every stored key of this namespace starts with.
    pub fn key_prefix(&self) -> String {
        match &self.0 {
            None => String::new(),
            Some(name) => format!("{name}/"),
        }
    }
}

impl fmt::Display for ViewNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or("live"))
    }
}

/// Checks a projection name: non-empty, no `#` or `/` (they delimit keys), not reserved.
pub fn check_projection(projection: &str) -> Result<(), ViewError> {
    let reason = if projection.is_empty() {
        Some("must not be empty".to_string())
    } else if projection.contains(['#', '/']) || projection.chars().any(char::is_control) {
        Some(format!(
            "{projection:?} must not contain '#', '/' or control characters"
        ))
    } else if RESERVED_PROJECTIONS.contains(&projection) {
        Some(format!("{projection:?} is reserved for bookkeeping"))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ViewError::Invalid {
            field: "projection",
            reason,
        }),
        None => Ok(()),
    }
}

/// The address of one view item: `<projection>#<key>` (the key may contain `#`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewKey {
    projection: String,
    key: String,
}

impl ViewKey {
    pub fn new(projection: &str, key: &str) -> Result<Self, ViewError> {
        check_projection(projection)?;
        if key.is_empty() || key.chars().any(char::is_control) {
            return Err(ViewError::Invalid {
                field: "key",
                reason: format!("{key:?} must be non-empty without control characters"),
            });
        }
        Ok(Self {
            projection: projection.to_string(),
            key: key.to_string(),
        })
    }

    pub fn projection(&self) -> &str {
        &self.projection
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// `<projection>#<key>`, the contract's `pk` (within the live namespace).
    pub fn pk(&self) -> String {
        format!("{}#{}", self.projection, self.key)
    }

    /// Splits a `pk` (without namespace) back into projection and key.
    pub fn from_pk(pk: &str) -> Result<Self, ViewError> {
        let (projection, key) = pk.split_once('#').ok_or_else(|| ViewError::Corrupt {
            pk: pk.to_string(),
            reason: "pk has no '#' between projection and key".to_string(),
        })?;
        Self::new(projection, key)
    }
}

impl fmt::Display for ViewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.projection, self.key)
    }
}

/// The last applied version of each source stream that fed an item.
pub type LastVersions = BTreeMap<StreamId, u64>;

/// One view item as the store holds it (a row of the views table): the domain's
/// `projections::ViewItem` with its state as JSON, plus the store's bookkeeping. `revision`
/// counts the writes (1 after the first) and is the token of the optimistic condition;
/// `last_version` says how far each source stream was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRow {
    pub key: ViewKey,
    pub revision: u64,
    pub last_version: LastVersions,
    pub state: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

impl ViewRow {
    /// Last applied version of `stream` (0 when the stream never fed this item).
    pub fn applied(&self, stream: &StreamId) -> u64 {
        self.last_version.get(stream).copied().unwrap_or(0)
    }
}

/// The revision a writer read, and so expects to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// The item must not exist yet.
    Absent,
    /// The item must still be at this revision.
    Exact(u64),
}

impl ExpectedRevision {
    /// What a writer expects after reading `item`.
    pub fn of(item: Option<&ViewRow>) -> Self {
        item.map_or(ExpectedRevision::Absent, |i| {
            ExpectedRevision::Exact(i.revision)
        })
    }

    /// The revision the item has after a successful write.
    pub fn next(self) -> u64 {
        match self {
            ExpectedRevision::Absent => 1,
            ExpectedRevision::Exact(r) => r + 1,
        }
    }
}

/// One conditional put of a whole item.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewWrite {
    pub key: ViewKey,
    pub expected: ExpectedRevision,
    pub last_version: LastVersions,
    pub state: serde_json::Value,
}

impl ViewWrite {
    /// A write that replaces `current` (or creates the item when there is none).
    pub fn replacing(
        key: ViewKey,
        current: Option<&ViewRow>,
        last_version: LastVersions,
        state: serde_json::Value,
    ) -> Self {
        Self {
            key,
            expected: ExpectedRevision::of(current),
            last_version,
            state,
        }
    }
}

/// One page of a projection's items (`ViewStore::list_page`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ViewPage {
    pub items: Vec<ViewRow>,
    /// The cursor of the next page; `None` after the last one.
    pub next: Option<String>,
}

/// The writes that store the pages an item spilled (`Projection::spill`), to go in the same
/// commit as the item. Each is conditioned on the page being absent: a page exists only if the
/// item state that spilled it was committed, and then the events that spilled it are already
/// applied and never spill it again, so a second write of the same page is a bug to surface.
pub fn page_writes(
    projection: &str,
    pages: Vec<projections::projection::Page>,
) -> Result<Vec<ViewWrite>, ViewError> {
    pages
        .into_iter()
        .map(|page| {
            Ok(ViewWrite {
                key: ViewKey::new(projection, &page.key)?,
                expected: ExpectedRevision::Absent,
                last_version: LastVersions::new(),
                state: page.state,
            })
        })
        .collect()
}

/// A feed reader's resumable position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub name: String,
    pub position: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("view item {pk} was changed concurrently (expected {expected:?})")]
    Conflict {
        pk: String,
        expected: ExpectedRevision,
    },
    #[error("one commit may write at most {max} items, got {count}")]
    TooManyWrites { count: usize, max: usize },
    /// A state that outgrew one item: a projection keeps too much under one key.
    #[error("view item {pk} would be {bytes} bytes, over the {max}-byte item limit")]
    TooLarge {
        pk: String,
        bytes: usize,
        max: usize,
    },
    #[error("one commit writes {pk} twice")]
    DuplicateWrite { pk: String },
    #[error("the view store is throttling requests: {0}")]
    Throttled(String),
    #[error("the view store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored view item is corrupt ({pk}): {reason}")]
    Corrupt { pk: String, reason: String },
    #[error("the view store is not migrated: {0} (run `ledger migrate`)")]
    NotMigrated(String),
    #[error("view store error: {0}")]
    Store(String),
}

impl ViewError {
    /// Whether the same call can succeed later. A `Conflict` is not: the caller must re-read.
    pub fn is_transient(&self) -> bool {
        matches!(self, ViewError::Throttled(_) | ViewError::Unavailable(_))
    }
}

/// Checks the shape of a commit before any adapter touches storage.
pub fn check_commit(writes: &[ViewWrite]) -> Result<(), ViewError> {
    if writes.len() > MAX_WRITES_PER_COMMIT {
        return Err(ViewError::TooManyWrites {
            count: writes.len(),
            max: MAX_WRITES_PER_COMMIT,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for w in writes {
        if !seen.insert(&w.key) {
            return Err(ViewError::DuplicateWrite { pk: w.key.pk() });
        }
    }
    Ok(())
}

/// Checks a batch (`ViewStore::commit_batch`) before any write: no group over one commit's
/// limit, no item twice.
pub fn check_batch(groups: &[Vec<ViewWrite>]) -> Result<(), ViewError> {
    if let Some(big) = groups.iter().find(|g| g.len() > MAX_WRITES_PER_COMMIT) {
        return Err(ViewError::TooManyWrites {
            count: big.len(),
            max: MAX_WRITES_PER_COMMIT,
        });
    }
    let mut seen = std::collections::HashSet::new();
    match groups.iter().flatten().find(|w| !seen.insert(&w.key)) {
        Some(twice) => Err(ViewError::DuplicateWrite { pk: twice.key.pk() }),
        None => Ok(()),
    }
}

/// Refuses a write whose item would not fit in one DynamoDB item; `payload_bytes` is what
/// the adapter stores for it (state JSON plus the last-version map).
pub fn check_item_size(key: &ViewKey, payload_bytes: usize) -> Result<(), ViewError> {
    let bytes = key.pk().len() + payload_bytes;
    if bytes > MAX_ITEM_BYTES {
        return Err(ViewError::TooLarge {
            pk: key.pk(),
            bytes,
            max: MAX_ITEM_BYTES,
        });
    }
    Ok(())
}

/// Checks a checkpoint name (`worker#account#<shard>`, `replay#...`).
pub fn check_checkpoint_name(name: &str) -> Result<(), ViewError> {
    if name.is_empty() || name.len() > 1024 || name.chars().any(char::is_control) {
        return Err(ViewError::Invalid {
            field: "checkpoint",
            reason: format!("{name:?} must be 1-1024 characters without control characters"),
        });
    }
    Ok(())
}

/// The views beside the ledger a `StoreUrl` names (`<path>` for SQLite, `<prefix>-views`
/// for DynamoDB, whose client comes from the process's AWS configuration, loaded only then).
pub async fn open_views(
    store: &StoreUrl,
    aws: &crate::config::AwsConfig,
) -> Result<Arc<dyn ViewStore>, ViewError> {
    match store {
        StoreUrl::Sqlite(path) => {
            let path = path.clone();
            let views = tokio::task::spawn_blocking(move || sqlite::SqliteViewStore::open(&path))
                .await
                .map_err(|e| ViewError::Store(format!("opening the views failed: {e}")))??;
            Ok(Arc::new(views))
        }
        StoreUrl::DynamoDb { table_prefix } => Ok(Arc::new(dynamodb::DynamoViewStore::new(
            aws_sdk_dynamodb::Client::new(aws.get().await),
            dynamodb::DynamoViewStore::table_name(table_prefix),
        ))),
    }
}

/// The view store port. Every method is safe to retry.
#[async_trait]
pub trait ViewStore: Send + Sync {
    /// The namespace this store addresses.
    fn namespace(&self) -> &ViewNamespace;

    /// The same store addressing another namespace (replay `--into`).
    fn in_namespace(&self, namespace: ViewNamespace) -> Arc<dyn ViewStore>;

    /// One item, read consistently (a writer's next `commit` is conditioned on it).
    async fn get(&self, key: &ViewKey) -> Result<Option<ViewRow>, ViewError>;

    /// Several items, read consistently like `get`, answered in `keys` order (a key given
    /// twice is answered twice). In as few round trips as the store allows: one query on the
    /// embedded store, one BatchGetItem per `MAX_KEYS_PER_READ` keys on DynamoDB.
    async fn get_many(&self, keys: &[ViewKey]) -> Result<Vec<Option<ViewRow>>, ViewError>;

    /// Puts every write atomically, each only if its item is still at the expected revision;
    /// otherwise nothing is written and `Conflict` names the first item that moved. Returns
    /// the new revisions in write order.
    async fn commit(&self, writes: Vec<ViewWrite>) -> Result<Vec<u64>, ViewError>;

    /// Every item of one projection, in `pk` order (replay verify, digests, ops).
    async fn list(&self, projection: &str) -> Result<Vec<ViewRow>, ViewError>;

    /// Deletes every item of one projection (a replay wipe); returns how many went.
    async fn delete_projection(&self, projection: &str) -> Result<usize, ViewError>;

    /// Up to `limit` items of one projection after the cursor `after` (`None`: the first
    /// page), in the store's own order (key order on SQLite, scan order on DynamoDB): what
    /// reads a whole projection with bounded memory (streaming digests, partition wipes).
    async fn list_page(
        &self,
        projection: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<ViewPage, ViewError>;

    /// Many commits in as few round trips as the store allows (a replay's flush): each
    /// group is atomic like one `commit` (every write under its revision condition, all or
    /// nothing) and holds at most `MAX_WRITES_PER_COMMIT` writes; groups are applied in order,
    /// as many per round trip as fit (the embedded store: all of them in one transaction).
    /// On a `Conflict` the round trips before the failing one stay written. A write's new
    /// revision is always its expected one plus one.
    async fn commit_batch(&self, groups: Vec<Vec<ViewWrite>>) -> Result<(), ViewError> {
        check_batch(&groups)?;
        let mut chunk: Vec<ViewWrite> = Vec::new();
        for group in groups {
            if !chunk.is_empty() && chunk.len() + group.len() > MAX_WRITES_PER_COMMIT {
                self.commit(std::mem::take(&mut chunk)).await?;
            }
            chunk.extend(group);
        }
        if !chunk.is_empty() {
            self.commit(chunk).await?;
        }
        Ok(())
    }

    /// Deletes these items whatever their revision (a partition's wipe before its replay);
    /// keys without an item are skipped.
    async fn delete_items(&self, keys: &[ViewKey]) -> Result<(), ViewError>;

    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, ViewError>;

    /// Records a reader's position (last writer wins: one reader owns a checkpoint name).
    async fn save_checkpoint(&self, name: &str, position: &str) -> Result<(), ViewError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_names_cannot_smuggle_delimiters_or_reserved_words() {
        assert!(ViewKey::new("account", "crm#001").is_ok());
        for bad in ["", "acc#ount", "a/b", "checkpoint"] {
            let err = ViewKey::new(bad, "k").unwrap_err();
            assert!(err.to_string().starts_with("projection:"), "{err}");
        }
        assert!(ViewKey::new("account", "").is_err());
    }

    #[test]
    fn pk_round_trips_with_hashes_in_the_key() {
        let key = ViewKey::new("correlation", "link#crm#001").unwrap();
        assert_eq!(key.pk(), "correlation#link#crm#001");
        assert_eq!(ViewKey::from_pk(&key.pk()).unwrap(), key);
    }

    #[test]
    fn namespaces_prefix_keys_and_reject_odd_names() {
        assert_eq!(ViewNamespace::live().key_prefix(), "");
        assert_eq!(ViewNamespace::named("r1").unwrap().key_prefix(), "r1/");
        assert!(ViewNamespace::named("a/b").is_err());
        assert!(ViewNamespace::named("").is_err());
    }
}
