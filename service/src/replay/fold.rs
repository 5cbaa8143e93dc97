//! The replay fold of one projection: offers recorded events to their view items with the
//! same ordering guard and `evolve` as live projection (`ViewItem::apply`), caches the items
//! it touched and hands their writes to the caller, who commits every fold's writes of a
//! checkpoint together. It never calls `decide`. Its memory is bounded: the item cache is
//! dropped past its limit (`CACHE_LIMIT` by default), and evicted keys are remembered in a
//! fixed-size filter.

use super::key_filter::KeyFilter;
use super::ReplayError;
use crate::ledger::EventLog;
use crate::views::{
    page_writes, ExpectedRevision, ViewError, ViewKey, ViewStore, ViewWrite, MAX_WRITES_PER_COMMIT,
};
use async_trait::async_trait;
use projections::projection::{Apply, Projection, ViewItem as DomainItem};
use projections::{Partition, RecordedEvent};
use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::Arc;

/// Items kept in memory between flushes beyond which the cache is dropped after a flush
/// (later touches re-read them), so a huge rebuild does not hold every item. The log is
/// mostly read in runs of one entity's events, so a small cache loses few hits: at 20,000
/// items per projection the cached states were most of a 1M-event replay's 190-270 MiB.
pub const CACHE_LIMIT: usize = 4_096;

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
    async fn flush(&mut self) -> Result<usize, ReplayError> {
        let groups = self.drain()?;
        let count = groups.len();
        commit(self.views(), groups).await?;
        self.evict();
        Ok(count)
    }

    /// The writes of every item changed since the last drain, one group per item (the item,
    /// then the pages it spilled, to be committed together), for the caller to commit with
    /// other folds' groups, possibly while this fold goes on. The cached items take the
    /// revision their write will give them (a write's revision is always the expected one
    /// plus one), so the next drain is conditioned on it.
    fn drain(&mut self) -> Result<Vec<Vec<ViewWrite>>, ReplayError>;

    /// Drops the cached items not changed since the last drain once the cache is over its
    /// limit. Only call it when every drained write has landed: an evicted item is read
    /// back from the store.
    fn evict(&mut self);

    /// The store the fold writes to.
    fn views(&self) -> &dyn ViewStore;

    /// Folds only the view keys `partition` owns; every other event is `Ignored`.
    fn restrict_to(&mut self, partition: Partition);

    /// Keeps at most about `items` items cached between flushes (at least 1).
    fn cache_items(&mut self, items: usize);

    /// Tells the fold the target holds no item of this projection (it was just wiped), so
    /// new keys need no read.
    fn assume_empty(&mut self);
}

/// Commits a flush's groups (an item with its pages each) in as few round trips as the
/// store allows; a conflict means someone else wrote the views meanwhile.
pub async fn commit(
    views: &dyn ViewStore,
    mut groups: Vec<Vec<ViewWrite>>,
) -> Result<(), ReplayError> {
    for group in &mut groups {
        if group.len() > MAX_WRITES_PER_COMMIT {
            // More pages than one commit holds (a very long run between flushes): store the
            // pages first, each only if absent or identical, so a rerun after a crash between
            // them and the item rewrites nothing differently.
            for page in group.drain(1..) {
                put_page(views, page).await?;
            }
        }
    }
    groups.retain(|group| !group.is_empty());
    if groups.is_empty() {
        return Ok(());
    }
    match views.commit_batch(groups).await {
        Ok(()) => Ok(()),
        Err(ViewError::Conflict { pk, .. }) => Err(ReplayError::Concurrent { pk }),
        Err(e) => Err(e.into()),
    }
}

/// Stores a spilled page unless the same page is already there (pages are write-once).
async fn put_page(views: &dyn ViewStore, page: ViewWrite) -> Result<(), ReplayError> {
    if let Some(stored) = views.get(&page.key).await? {
        if stored.state == page.state {
            return Ok(());
        }
        return Err(ReplayError::Concurrent { pk: page.key.pk() });
    }
    match views.commit(vec![page]).await {
        Ok(_) => Ok(()),
        Err(ViewError::Conflict { pk, .. }) => Err(ReplayError::Concurrent { pk }),
        Err(e) => Err(e.into()),
    }
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
    evicted: KeyFilter,
    partition: Partition,
    cache_limit: usize,
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
            evicted: KeyFilter::new(),
            partition: Partition::ALL,
            cache_limit: CACHE_LIMIT,
            _projection: PhantomData,
        }
    }

    async fn load(&mut self, key: &str) -> Result<&mut Cached<P::State>, ReplayError> {
        if !self.cache.contains_key(key) {
            let view_key = ViewKey::new(P::NAME, key)?;
            let stored = if self.empty && !self.evicted.may_contain(key) {
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
        if !self.partition.owns(P::NAME, &key) {
            return Ok(Offered::Ignored);
        }
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

    fn drain(&mut self) -> Result<Vec<Vec<ViewWrite>>, ReplayError> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut groups = Vec::with_capacity(dirty.len());
        for key in &dirty {
            let cached = self.cache.get_mut(key).expect("dirty items are cached");
            // Each item goes with the pages it spilled, in one commit, so a page exists
            // exactly when the item state that spilled it does (the live runner's rule too).
            let mut group = vec![ViewWrite {
                key: ViewKey::new(P::NAME, key)?,
                expected: cached.expected,
                last_version: cached.item.last_version.clone(),
                state: serde_json::to_value(&cached.item.state)
                    .expect("projection states serialize to JSON"),
            }];
            group.extend(page_writes(P::NAME, cached.item.take_spilled())?);
            cached.expected = ExpectedRevision::Exact(cached.expected.next());
            groups.push(group);
        }
        Ok(groups)
    }

    fn evict(&mut self) {
        if self.cache.len() <= self.cache_limit {
            return;
        }
        // Remembering the evicted keys keeps every never-seen key read-free (forgetting
        // them made each new item of a long rebuild a store read); a fixed-size filter
        // does it in bounded memory, a false positive costing one read.
        let dirty = &self.dirty;
        let (empty, evicted) = (self.empty, &mut self.evicted);
        self.cache.retain(|key, _| {
            let keep = dirty.contains(key);
            if !keep && empty {
                evicted.insert(key);
            }
            keep
        });
    }

    fn views(&self) -> &dyn ViewStore {
        self.views.as_ref()
    }

    fn restrict_to(&mut self, partition: Partition) {
        self.partition = partition;
    }

    fn cache_items(&mut self, items: usize) {
        self.cache_limit = items.max(1);
    }

    fn assume_empty(&mut self) {
        self.cache.clear();
        self.dirty.clear();
        self.evicted = KeyFilter::new();
        self.empty = true;
    }
}
