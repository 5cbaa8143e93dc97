//! The replay fold of one projection: offers recorded events to their view items with the
//! same ordering guard and `evolve` as live projection (`ViewItem::apply`), caches the items
//! it touched and writes them back in conditional commits. It never calls `decide`.

use super::ReplayError;
use crate::ledger::EventLog;
use crate::views::{
    page_writes, ExpectedRevision, ViewError, ViewKey, ViewStore, ViewWrite, MAX_WRITES_PER_COMMIT,
};
use async_trait::async_trait;
use projections::projection::{Apply, Projection, ViewItem as DomainItem};
use projections::RecordedEvent;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::Arc;

/// Items kept in memory between flushes beyond which the cache is dropped after a flush
/// (later touches re-read them), so a huge rebuild does not hold every item.
const CACHE_LIMIT: usize = 20_000;

/// What offering one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Folded in (plus `gap_filled` earlier versions of its stream read from the log).
    Applied { gap_filled: usize },
    /// The item had this version already (a resumed run, or `--from` over kept views).
    AlreadyApplied,
    /// The projection does not follow this event's stream.
    Ignored,
}

/// A projection's replay fold, without its state type.
#[async_trait]
pub trait Replayer: Send {
    fn name(&self) -> &'static str;

    /// Folds one event into its item (in memory until `flush`).
    async fn offer(&mut self, event: &RecordedEvent) -> Result<Offered, ReplayError>;

    /// Writes every changed item; returns how many were written.
    async fn flush(&mut self) -> Result<usize, ReplayError>;

    /// Tells the fold the target holds no item of this projection (it was just wiped), so
    /// new keys need no read.
    fn assume_empty(&mut self);
}

struct Cached<S> {
    item: DomainItem<S>,
    expected: ExpectedRevision,
}

/// The replay fold of projection `P` into one view store (namespace).
pub struct Rebuilder<P: Projection> {
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    cache: HashMap<String, Cached<P::State>>,
    dirty: BTreeSet<String>,
    /// The target held no item of this projection when the rebuild started (it was wiped),
    /// so only keys written by this fold and since evicted from the cache need a read.
    empty: bool,
    evicted: HashSet<String>,
    _projection: PhantomData<fn() -> P>,
}

impl<P: Projection> Rebuilder<P> {
    pub fn new(log: Arc<dyn EventLog>, views: Arc<dyn ViewStore>) -> Self {
        Self {
            log,
            views,
            cache: HashMap::new(),
            dirty: BTreeSet::new(),
            empty: false,
            evicted: HashSet::new(),
            _projection: PhantomData,
        }
    }

    /// Commits items (each with its pages, the item first) in one transaction; returns how
    /// many items were written and remembers their new revisions.
    async fn commit_groups(
        &mut self,
        groups: Vec<(String, Vec<ViewWrite>)>,
    ) -> Result<usize, ReplayError> {
        let keys: Vec<String> = groups.iter().map(|(key, _)| key.clone()).collect();
        let mut heads = Vec::with_capacity(groups.len());
        let mut writes = Vec::new();
        for (_, group) in groups {
            heads.push(writes.len());
            writes.extend(group);
        }
        let revisions = match self.views.commit(writes).await {
            Ok(revisions) => revisions,
            Err(ViewError::Conflict { pk, .. }) => return Err(ReplayError::Concurrent { pk }),
            Err(e) => return Err(e.into()),
        };
        for (key, head) in keys.iter().zip(heads) {
            if let Some(cached) = self.cache.get_mut(key) {
                cached.expected = ExpectedRevision::Exact(revisions[head]);
            }
        }
        Ok(keys.len())
    }

    /// Stores a spilled page unless the same page is already there (pages are write-once).
    async fn put_page(&self, page: ViewWrite) -> Result<(), ReplayError> {
        if let Some(stored) = self.views.get(&page.key).await? {
            if stored.state == page.state {
                return Ok(());
            }
            return Err(ReplayError::Concurrent { pk: page.key.pk() });
        }
        match self.views.commit(vec![page]).await {
            Ok(_) => Ok(()),
            Err(ViewError::Conflict { pk, .. }) => Err(ReplayError::Concurrent { pk }),
            Err(e) => Err(e.into()),
        }
    }

    async fn load(&mut self, key: &str) -> Result<&mut Cached<P::State>, ReplayError> {
        if !self.cache.contains_key(key) {
            let view_key = ViewKey::new(P::NAME, key)?;
            let stored = if self.empty && !self.evicted.contains(key) {
                None
            } else {
                self.views.get(&view_key).await?
            };
            let cached = match stored {
                None => Cached {
                    item: DomainItem::new(key),
                    expected: ExpectedRevision::Absent,
                },
                Some(stored) => Cached {
                    expected: ExpectedRevision::Exact(stored.revision),
                    item: DomainItem::stored(
                        key,
                        stored.last_version,
                        serde_json::from_value(stored.state).map_err(|e| {
                            ReplayError::UnreadableState {
                                pk: view_key.pk(),
                                reason: e.to_string(),
                            }
                        })?,
                    ),
                },
            };
            self.cache.insert(key.to_string(), cached);
        }
        Ok(self.cache.get_mut(key).expect("inserted above"))
    }
}

#[async_trait]
impl<P> Replayer for Rebuilder<P>
where
    P: Projection + 'static,
    P::State: Send + Sync,
{
    fn name(&self) -> &'static str {
        P::NAME
    }

    async fn offer(&mut self, event: &RecordedEvent) -> Result<Offered, ReplayError> {
        let Some(key) = P::key(event) else {
            return Ok(Offered::Ignored);
        };
        let (expected, got) = match self.load(&key).await?.item.apply::<P>(event) {
            Apply::AlreadyApplied => return Ok(Offered::AlreadyApplied),
            Apply::Applied => {
                self.dirty.insert(key);
                return Ok(Offered::Applied { gap_filled: 0 });
            }
            Apply::Gap { expected, got, .. } => (expected, got),
        };
        // The same gap fill as live projection: earlier versions of the stream (which this
        // projection's key may have ignored, or which precede `--from`) come from the log and
        // go to the delivered event's item, so both paths fold exactly the same events.
        let earlier = self.log.read_stream(&event.stream_id, expected).await?;
        let cached = self.load(&key).await?;
        let mut filled = 0;
        for e in earlier.iter().filter(|e| e.version < got) {
            if cached.item.apply::<P>(e) != Apply::Applied {
                break;
            }
            filled += 1;
        }
        match cached.item.apply::<P>(event) {
            Apply::Applied => {
                self.dirty.insert(key);
                Ok(Offered::Applied { gap_filled: filled })
            }
            Apply::AlreadyApplied => Ok(Offered::AlreadyApplied),
            Apply::Gap {
                stream,
                expected,
                got,
            } => Err(ReplayError::Unfillable {
                stream,
                missing: expected,
                got,
            }),
        }
    }

    async fn flush(&mut self) -> Result<usize, ReplayError> {
        let dirty: Vec<String> = std::mem::take(&mut self.dirty).into_iter().collect();
        // Each item goes with the pages it spilled, in one commit, so a page exists exactly
        // when the item state that spilled it does (the live runner's rule too).
        let mut groups: Vec<(String, Vec<ViewWrite>)> = Vec::with_capacity(dirty.len());
        for key in dirty {
            let cached = self.cache.get_mut(&key).expect("dirty items are cached");
            let mut writes = vec![ViewWrite {
                key: ViewKey::new(P::NAME, &key)?,
                expected: cached.expected,
                last_version: cached.item.last_version.clone(),
                state: serde_json::to_value(&cached.item.state)
                    .expect("projection states serialize to JSON"),
            }];
            writes.extend(page_writes(P::NAME, cached.item.take_spilled())?);
            groups.push((key, writes));
        }
        let mut written = 0;
        let mut batch: Vec<(String, Vec<ViewWrite>)> = Vec::new();
        let mut batch_writes = 0;
        for (key, mut writes) in groups {
            if writes.len() > MAX_WRITES_PER_COMMIT {
                // More pages than one commit holds (a very long run between flushes): store
                // the pages first, each only if absent or identical, so a rerun after a crash
                // between them and the item rewrites nothing differently.
                let head = writes.remove(0);
                for page in writes {
                    self.put_page(page).await?;
                }
                writes = vec![head];
            }
            if batch_writes + writes.len() > MAX_WRITES_PER_COMMIT {
                written += self.commit_groups(std::mem::take(&mut batch)).await?;
                batch_writes = 0;
            }
            batch_writes += writes.len();
            batch.push((key, writes));
        }
        if !batch.is_empty() {
            written += self.commit_groups(batch).await?;
        }
        if self.cache.len() > CACHE_LIMIT {
            // Remembering the evicted keys (a few bytes each) keeps every never-seen key
            // read-free; forgetting them made each new item of a long rebuild a store read.
            if self.empty {
                self.evicted.extend(self.cache.drain().map(|(key, _)| key));
            }
            self.cache.clear();
        }
        Ok(written)
    }

    fn assume_empty(&mut self) {
        self.cache.clear();
        self.dirty.clear();
        self.evicted.clear();
        self.empty = true;
    }
}
