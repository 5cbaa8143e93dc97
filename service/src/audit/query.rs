//! The audit query behind `ledger audit`, `ledger serve` and the `audit_api` Lambda: parses
//! an id, resolves an entity id through the correlation view, reads each trace with
//! `by_correlation` and builds its causal tree. It never writes.

use super::chain::{build_chain, Chain};
use super::AuditError;
use crate::ledger::EventLog;
use crate::views::{ViewKey, ViewStore};
use projections::correlation_view::{
    link_key, traces_page_key, CorrelationView, LinkItem, TracesPage,
};
use projections::{CorrelationId, Projection, Side};
use serde::Serialize;

/// Longest id accepted (stream ids are capped at 1024 bytes, entity ids are part of them).
const MAX_ID_LEN: usize = 1000;

/// What an audit id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditId {
    Correlation(CorrelationId),
    /// A CRM or Billing record id (either side is tried).
    Entity(String),
}

impl AuditId {
    /// A UUID is a correlation id; anything else printable is an entity id.
    pub fn parse(raw: &str) -> Result<Self, AuditError> {
        let id = raw.trim();
        let reason = if id.is_empty() {
            Some("must not be empty".to_string())
        } else if id.len() > MAX_ID_LEN {
            Some(format!("longer than {MAX_ID_LEN} bytes"))
        } else if id.chars().any(|c| c.is_control() || c == '#' || c == '/') {
            Some("must not contain control characters, '#' or '/'".to_string())
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(AuditError::BadId { reason });
        }
        Ok(match CorrelationId::parse(id) {
            Ok(correlation) => AuditId::Correlation(correlation),
            Err(_) => AuditId::Entity(id.to_string()),
        })
    }
}

/// How the id was resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Resolved {
    CorrelationId,
    /// An entity id, found on these sides of the correlation view.
    EntityId {
        matches: Vec<EntityMatch>,
    },
}

/// One correlation view item the entity id resolved through.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityMatch {
    pub side: Side,
    pub id: String,
    pub entity: Option<String>,
    /// The ids it is linked to on the other side.
    pub linked_to: Vec<String>,
    pub correlation_ids: Vec<CorrelationId>,
}

/// The answer to one audit query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    pub query: String,
    pub resolved: Resolved,
    /// One causal tree per correlation id, in the order the entity first saw them.
    pub chains: Vec<Chain>,
}

/// Runs an audit query. `NotFound` when nothing carries the id.
pub async fn audit(
    log: &dyn EventLog,
    views: &dyn ViewStore,
    id: &AuditId,
) -> Result<AuditReport, AuditError> {
    match id {
        AuditId::Correlation(correlation) => {
            let events = log.by_correlation(correlation).await?;
            if events.is_empty() {
                return Err(AuditError::NotFound {
                    id: correlation.to_string(),
                });
            }
            Ok(AuditReport {
                query: correlation.to_string(),
                resolved: Resolved::CorrelationId,
                chains: vec![build_chain(*correlation, events)],
            })
        }
        AuditId::Entity(entity) => {
            let mut matches = Vec::new();
            for side in [Side::Crm, Side::Billing] {
                if let Some(item) = link_item(views, side, entity).await? {
                    matches.push(EntityMatch {
                        side,
                        id: entity.clone(),
                        entity: item.entity.clone(),
                        linked_to: item
                            .links
                            .iter()
                            .map(|l| l.counterpart_id.clone())
                            .collect(),
                        correlation_ids: traces_of(views, side, entity, &item).await?,
                    });
                }
            }
            let mut correlation_ids: Vec<CorrelationId> = Vec::new();
            for id in matches.iter().flat_map(|m| &m.correlation_ids) {
                if !correlation_ids.contains(id) {
                    correlation_ids.push(*id);
                }
            }
            if correlation_ids.is_empty() {
                return Err(AuditError::NotFound { id: entity.clone() });
            }
            let mut chains = Vec::with_capacity(correlation_ids.len());
            for correlation in correlation_ids {
                let events = log.by_correlation(&correlation).await?;
                chains.push(build_chain(correlation, events));
            }
            Ok(AuditReport {
                query: entity.clone(),
                resolved: Resolved::EntityId { matches },
                chains,
            })
        }
    }
}

async fn link_item(
    views: &dyn ViewStore,
    side: Side,
    id: &str,
) -> Result<Option<LinkItem>, AuditError> {
    read_state(views, &link_key(side, id)).await
}

/// Every trace that touched the entity, first seen first: its spilled traces pages in order,
/// then the item's tail, each id once (the fold dedupes within the tail only). Reads
/// `item.trace_pages` items of ~5 KB each.
pub async fn traces_of(
    views: &dyn ViewStore,
    side: Side,
    id: &str,
    item: &LinkItem,
) -> Result<Vec<CorrelationId>, AuditError> {
    let item_key = link_key(side, id);
    let mut traces: Vec<CorrelationId> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for n in 0..item.trace_pages {
        let page_key = traces_page_key(&item_key, n);
        let page: TracesPage =
            read_state(views, &page_key)
                .await?
                .ok_or_else(|| AuditError::UnreadableView {
                    pk: format!("{}#{page_key}", CorrelationView::NAME),
                    reason: format!("traces page {n} of {} is missing", item.trace_pages),
                })?;
        traces.extend(page.correlation_ids.into_iter().filter(|c| seen.insert(*c)));
    }
    traces.extend(item.correlation_ids.iter().filter(|c| seen.insert(**c)));
    Ok(traces)
}

/// One correlation-view item (a link item or one of its pages), decoded.
async fn read_state<T: serde::de::DeserializeOwned>(
    views: &dyn ViewStore,
    key: &str,
) -> Result<Option<T>, AuditError> {
    let key = ViewKey::new(CorrelationView::NAME, key)?;
    let Some(item) = views.get(&key).await? else {
        return Ok(None);
    };
    serde_json::from_value(item.state)
        .map(Some)
        .map_err(|e| AuditError::UnreadableView {
            pk: key.pk(),
            reason: e.to_string(),
        })
}
