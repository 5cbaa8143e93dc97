//! The change feed over DynamoDB Streams: DescribeStream for the shard tree, one iterator
//! per shard, GetRecords, and decoding of `kind = event` new images. It must not reorder
//! records within a shard or skip a parent shard, and it never writes to the ledger.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodbstreams::error::ProvideErrorMetadata;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;

use super::errors::{classify, with_retries};
use super::item;
use crate::ledger::{ChangeFeed, FeedItem, FeedPosition, FeedStart, LedgerError};

/// How often the shard tree is re-read while nothing closes (new shards appear when
/// DynamoDB splits a partition or rolls a shard over, roughly every few hours).
const REFRESH_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct ShardState {
    id: String,
    parent: Option<String>,
    /// How to obtain the first iterator when none is held yet.
    start: StartAt,
    iterator: Option<String>,
    last_sequence: Option<String>,
    /// Closed and read to its end (or deliberately skipped).
    finished: bool,
}

#[derive(Debug, Clone)]
enum StartAt {
    TrimHorizon,
    Latest,
    After(String),
}

pub(super) struct StreamsFeed {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    shards: Vec<ShardState>,
    refreshed_at: Instant,
    /// Set when a shard finished: its children may now be listed.
    refresh_due: bool,
}

impl StreamsFeed {
    pub(super) async fn open(
        client: aws_sdk_dynamodbstreams::Client,
        stream_arn: String,
        start: FeedStart,
    ) -> Result<Self, LedgerError> {
        let mut feed = Self {
            client,
            stream_arn,
            shards: Vec::new(),
            refreshed_at: Instant::now(),
            refresh_due: false,
        };
        let listed = feed.describe().await?;
        feed.shards = plan(listed, &start)?;
        Ok(feed)
    }

    /// Every shard of the stream as `(id, parent, closed)`, parents listed before children.
    async fn describe(&self) -> Result<Vec<Listed>, LedgerError> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = with_retries(|| {
                let request = self
                    .client
                    .describe_stream()
                    .stream_arn(&self.stream_arn)
                    .set_exclusive_start_shard_id(start.clone());
                async move {
                    request
                        .send()
                        .await
                        .map_err(|e| classify("DescribeStream", e))
                }
            })
            .await?;
            let Some(description) = out.stream_description() else {
                break;
            };
            for shard in description.shards() {
                let Some(id) = shard.shard_id() else { continue };
                let closed = shard
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_some();
                shards.push((
                    id.to_string(),
                    shard.parent_shard_id().map(str::to_string),
                    closed,
                ));
            }
            match description.last_evaluated_shard_id() {
                Some(last) => start = Some(last.to_string()),
                None => break,
            }
        }
        Ok(shards)
    }

    async fn refresh(&mut self) -> Result<(), LedgerError> {
        let listed = self.describe().await?;
        for (id, parent, _) in listed {
            if self.shards.iter().all(|s| s.id != id) {
                // A shard born after the feed opened holds only new records: read it all.
                self.shards.push(ShardState {
                    id,
                    parent,
                    start: StartAt::TrimHorizon,
                    iterator: None,
                    last_sequence: None,
                    finished: false,
                });
            }
        }
        self.refreshed_at = Instant::now();
        self.refresh_due = false;
        Ok(())
    }

    async fn iterator(&self, shard: &ShardState) -> Result<String, LedgerError> {
        // Resuming after the last record we delivered beats the original start point.
        let start = match &shard.last_sequence {
            Some(sequence) => StartAt::After(sequence.clone()),
            None => shard.start.clone(),
        };
        let (kind, sequence) = match start {
            StartAt::TrimHorizon => (ShardIteratorType::TrimHorizon, None),
            StartAt::Latest => (ShardIteratorType::Latest, None),
            StartAt::After(sequence) => (ShardIteratorType::AfterSequenceNumber, Some(sequence)),
        };
        let out = with_retries(|| {
            let request = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(&shard.id)
                .shard_iterator_type(kind.clone())
                .set_sequence_number(sequence.clone());
            async move {
                request
                    .send()
                    .await
                    .map_err(|e| classify("GetShardIterator", e))
            }
        })
        .await?;
        out.shard_iterator().map(str::to_string).ok_or_else(|| {
            LedgerError::Store(format!(
                "GetShardIterator gave no iterator for {}",
                shard.id
            ))
        })
    }
}

#[async_trait]
impl ChangeFeed for StreamsFeed {
    async fn poll(&mut self, max: usize) -> Result<Vec<FeedItem>, LedgerError> {
        if self.refresh_due || self.refreshed_at.elapsed() >= REFRESH_EVERY {
            self.refresh().await?;
        }
        let mut delivered = Vec::new();
        let mut index = 0;
        while index < self.shards.len() && delivered.len() < max {
            if !readable(&self.shards, index) {
                index += 1;
                continue;
            }
            if self.shards[index].iterator.is_none() {
                let iterator = self.iterator(&self.shards[index]).await?;
                self.shards[index].iterator = Some(iterator);
            }
            let iterator = self.shards[index].iterator.clone().unwrap_or_default();
            let limit = (max - delivered.len()).clamp(1, 1000) as i32;
            let response = with_retries(|| {
                let request = self
                    .client
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(limit);
                async move {
                    match request.send().await {
                        Ok(out) => Ok(Ok(out)),
                        Err(err) => match err.code() {
                            // Iterators live 15 minutes; data lives 24 hours.
                            Some("ExpiredIteratorException") => Ok(Err(false)),
                            Some("TrimmedDataAccessException") => Ok(Err(true)),
                            _ => Err(classify("GetRecords", err)),
                        },
                    }
                }
            })
            .await?;
            let out = match response {
                Ok(out) => out,
                Err(trimmed) => {
                    let shard = &mut self.shards[index];
                    shard.iterator = None;
                    if trimmed {
                        // What we would resume after is gone: everything still retained
                        // follows it, so start there (at least once).
                        shard.last_sequence = None;
                        shard.start = StartAt::TrimHorizon;
                    }
                    continue;
                }
            };
            let shard_id = self.shards[index].id.clone();
            for record in out.records() {
                let Some(change) = record.dynamodb() else {
                    continue;
                };
                let Some(sequence) = change.sequence_number() else {
                    continue;
                };
                self.shards[index].last_sequence = Some(sequence.to_string());
                // Streams guarantee: each modification appears exactly once, in order per
                // item. Events are immutable, so only their INSERT carries a new image.
                let Some(image) = change.new_image() else {
                    continue;
                };
                if let Some(event) = item::decode_event(image.clone())? {
                    delivered.push(FeedItem {
                        position: format!("{shard_id}/{sequence}"),
                        event,
                    });
                }
            }
            let empty = out.records().is_empty();
            match out.next_shard_iterator() {
                Some(next) => self.shards[index].iterator = Some(next.to_string()),
                None => {
                    // The shard is closed and read to its end.
                    let shard = &mut self.shards[index];
                    shard.iterator = None;
                    shard.finished = true;
                    self.refresh_due = true;
                }
            }
            if empty || self.shards[index].finished {
                index += 1;
            }
        }
        Ok(delivered)
    }
}

/// A listed shard: `(id, parent, closed)`.
type Listed = (String, Option<String>, bool);

/// Where each listed shard starts for a feed opened at `start`.
fn plan(listed: Vec<Listed>, start: &FeedStart) -> Result<Vec<ShardState>, LedgerError> {
    let resume = match start {
        FeedStart::After(position) => Some(parse_position(position)?),
        _ => None,
    };
    // Shards the resume point has already passed: its ancestors.
    let mut passed = Vec::new();
    if let Some((shard, _)) = &resume {
        let parent_of = |id: &str| listed.iter().find(|s| s.0 == id).and_then(|s| s.1.clone());
        let mut cursor = parent_of(shard);
        while let Some(parent) = cursor {
            cursor = parent_of(&parent);
            passed.push(parent);
        }
    }
    Ok(listed
        .into_iter()
        .map(|(id, parent, closed)| {
            let (start_at, finished) = match (start, &resume) {
                (FeedStart::Beginning, _) => (StartAt::TrimHorizon, false),
                // Closed shards hold only the past; LATEST applies to the open ones.
                (FeedStart::Latest, _) => (StartAt::Latest, closed),
                (FeedStart::After(_), Some((shard, sequence))) if *shard == id => {
                    (StartAt::After(sequence.clone()), false)
                }
                // Other lineages restart from their trim horizon: at least once, never lost.
                (FeedStart::After(_), _) => (StartAt::TrimHorizon, passed.contains(&id)),
            };
            ShardState {
                id,
                parent,
                start: start_at,
                iterator: None,
                last_sequence: None,
                finished,
            }
        })
        .collect())
}

/// Streams guarantee: a child shard's records come after its parent's, so a child is read
/// only once its parent is finished (or trimmed away and no longer listed).
fn readable(shards: &[ShardState], index: usize) -> bool {
    let shard = &shards[index];
    !shard.finished
        && shard.parent.as_ref().is_none_or(|parent| {
            shards
                .iter()
                .find(|s| &s.id == parent)
                .is_none_or(|p| p.finished)
        })
}

/// `<shard id>/<sequence number>`; shard ids never contain `/`.
fn parse_position(position: &FeedPosition) -> Result<(String, String), LedgerError> {
    match position.split_once('/') {
        Some((shard, sequence))
            if !shard.is_empty()
                && !sequence.is_empty()
                && sequence.chars().all(|c| c.is_ascii_digit()) =>
        {
            Ok((shard.to_string(), sequence.to_string()))
        }
        _ => Err(LedgerError::Store(format!(
            "feed position {position:?} is not <shard id>/<sequence number>"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_name_a_shard_and_a_sequence_number() {
        assert_eq!(
            parse_position(&"shardId-0001-ab/1100000000017454423009".to_string()).unwrap(),
            (
                "shardId-0001-ab".to_string(),
                "1100000000017454423009".to_string()
            )
        );
        for bad in ["", "shard", "/12", "shard/", "shard/12x"] {
            assert!(parse_position(&bad.to_string()).is_err(), "{bad}");
        }
    }

    /// A resharded stream: `root` split into `left` and `right`; `left` has a child.
    fn tree() -> Vec<Listed> {
        let shard = |id: &str, parent: Option<&str>, closed: bool| {
            (id.to_string(), parent.map(str::to_string), closed)
        };
        vec![
            shard("root", None, true),
            shard("left", Some("root"), true),
            shard("right", Some("root"), false),
            shard("left-child", Some("left"), false),
        ]
    }

    fn readable_ids(shards: &[ShardState]) -> Vec<&str> {
        (0..shards.len())
            .filter(|i| readable(shards, *i))
            .map(|i| shards[i].id.as_str())
            .collect()
    }

    #[test]
    fn from_the_beginning_children_wait_for_their_parent() {
        let mut shards = plan(tree(), &FeedStart::Beginning).unwrap();
        assert_eq!(readable_ids(&shards), ["root"]);
        shards[0].finished = true;
        assert_eq!(readable_ids(&shards), ["left", "right"]);
        shards[1].finished = true;
        assert_eq!(readable_ids(&shards), ["right", "left-child"]);
        assert!(shards
            .iter()
            .all(|s| matches!(s.start, StartAt::TrimHorizon)));
    }

    #[test]
    fn latest_reads_only_open_shards_from_their_tip() {
        let shards = plan(tree(), &FeedStart::Latest).unwrap();
        assert_eq!(readable_ids(&shards), ["right", "left-child"]);
        assert!(matches!(shards[2].start, StartAt::Latest));
    }

    #[test]
    fn resuming_skips_the_ancestors_and_rereads_other_lineages() {
        let position = "left/1200".to_string();
        let shards = plan(tree(), &FeedStart::After(position)).unwrap();
        // `root` is an ancestor: done. `right` is another lineage: read again, at least once.
        assert_eq!(readable_ids(&shards), ["left", "right"]);
        assert!(matches!(&shards[1].start, StartAt::After(seq) if seq == "1200"));
        assert!(matches!(shards[2].start, StartAt::TrimHorizon));
        assert!(!readable(&shards, 3), "left-child waits for left to end");
    }
}
