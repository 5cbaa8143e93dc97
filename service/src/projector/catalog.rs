//! The Billing catalog as subscription calls need it: a product SKU resolves to the product's
//! rate plan priced in the order's currency. A miss reads that one product
//! (`GET /v1/catalog/products/{sku}`), never the whole catalog; the answer is kept in a
//! bounded cache (at most `capacity` SKUs, oldest first out) that any catalog event in a
//! batch clears, so a price or plan change is seen by the next subscription call. The order
//! projector sees every event of the log (its stream filter keeps all events), catalog ones
//! included; the time-to-live is the safety net for a deployment that would filter them.

use crate::connectors::billing::{CatalogProduct, CatalogRatePlan};
use crate::connectors::{BillingClient, ConnectorError};
use projections::projection::{entity, EntityStream, Side};
use projections::{CorrelationId, RecordedEvent};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Products kept by default: a catalog's SKUs in use, not its history.
pub const DEFAULT_CAPACITY: usize = 1_024;
/// Longest a product answer is trusted without a catalog event clearing it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

struct Cached {
    at: Instant,
    /// `None`: the SKU has no product (kept too, so a bad SKU is not re-read per call).
    product: Option<CatalogProduct>,
}

#[derive(Default)]
struct Entries {
    by_sku: HashMap<String, Cached>,
    /// Insertion order, for eviction.
    order: VecDeque<String>,
}

impl Entries {
    /// Keeps `cached` for `sku`, dropping the oldest SKUs beyond `capacity`.
    fn insert(&mut self, sku: &str, cached: Cached, capacity: usize) {
        if self.by_sku.insert(sku.to_string(), cached).is_none() {
            self.order.push_back(sku.to_string());
        }
        while self.order.len() > capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.by_sku.remove(&oldest);
            }
        }
    }
}

/// A bounded SKU -> product cache over the Billing catalog API, counting its reads.
pub struct CatalogCache {
    entries: Mutex<Entries>,
    capacity: usize,
    ttl: Duration,
    lookups: AtomicU64,
}

impl Default for CatalogCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_TTL)
    }
}

impl CatalogCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            capacity: capacity.max(1),
            ttl,
            lookups: AtomicU64::new(0),
        }
    }

    /// Catalog API reads made so far (the `CatalogLookups` metric is its growth per batch).
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Forgets everything when `events` hold a Billing catalog change.
    pub fn observe(&self, events: &[RecordedEvent]) {
        if events.iter().any(is_catalog_event) {
            let mut entries = self.lock();
            entries.by_sku.clear();
            entries.order.clear();
        }
    }

    /// The product with `sku`, from the cache or one catalog read.
    pub async fn product(
        &self,
        billing: &BillingClient,
        sku: &str,
        cid: CorrelationId,
    ) -> Result<Option<CatalogProduct>, ConnectorError> {
        if let Some(cached) = self.lock().by_sku.get(sku) {
            if cached.at.elapsed() < self.ttl {
                return Ok(cached.product.clone());
            }
        }
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let product = billing.get_product(sku, cid).await?;
        // Another product can share the key only as its id; keep the SKU's own answer.
        let product = product.filter(|p| p.sku == sku || p.id == sku);
        let cached = Cached {
            at: Instant::now(),
            product: product.clone(),
        };
        self.lock().insert(sku, cached, self.capacity);
        Ok(product)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A product's first rate plan whose every charge has a price in `currency` (Zuora refuses
/// a subscription in a currency one of its charges is not priced in). A plan without
/// charges prices nothing and is never picked.
pub fn rate_plan_for<'a>(
    product: &'a CatalogProduct,
    currency: &str,
) -> Option<&'a CatalogRatePlan> {
    product.product_rate_plans.iter().find(|plan| {
        !plan.product_rate_plan_charges.is_empty()
            && plan
                .product_rate_plan_charges
                .iter()
                .all(|c| c.pricing.iter().any(|p| p.currency == currency))
    })
}

fn is_catalog_event(event: &RecordedEvent) -> bool {
    EntityStream::parse(&event.stream_id).is_some_and(|s| {
        s.side == Side::Billing
            && matches!(
                s.entity,
                entity::PRODUCT | entity::RATE_PLAN | entity::CHARGE
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::billing::{CatalogCharge, CatalogPrice};

    fn plan(id: &str, currencies: &[&str]) -> CatalogRatePlan {
        CatalogRatePlan {
            id: id.into(),
            name: id.into(),
            product_rate_plan_charges: vec![CatalogCharge {
                id: format!("{id}-c"),
                name: "Seat".into(),
                pricing: currencies
                    .iter()
                    .map(|c| CatalogPrice {
                        currency: c.to_string(),
                        price: Some(10.0),
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn the_rate_plan_is_the_first_priced_in_the_currency() {
        let product = CatalogProduct {
            id: "p".into(),
            sku: "SKU".into(),
            name: "Gold".into(),
            effective_end_date: None,
            product_rate_plans: vec![plan("usd", &["USD"]), plan("eur", &["EUR", "GBP"])],
        };
        assert_eq!(rate_plan_for(&product, "USD").unwrap().id, "usd");
        assert_eq!(rate_plan_for(&product, "EUR").unwrap().id, "eur");
        assert_eq!(rate_plan_for(&product, "GBP").unwrap().id, "eur");
        assert!(rate_plan_for(&product, "JPY").is_none());
    }

    #[test]
    fn the_cache_keeps_at_most_its_capacity_newest_first() {
        let mut entries = Entries::default();
        for sku in ["a", "b", "c", "b"] {
            let cached = Cached {
                at: Instant::now(),
                product: None,
            };
            entries.insert(sku, cached, 2);
        }
        assert_eq!(entries.by_sku.len(), 2);
        assert_eq!(entries.order, ["b", "c"]);
    }
}
