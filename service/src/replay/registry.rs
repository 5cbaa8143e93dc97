//! The projections replay can rebuild: exactly the projector's list
//! (`projector::registry::PROJECTIONS`), by deployed name (`account`) or view name
//! (`account-sync`). Only the typed fold is chosen here; the fold itself is generic.

use super::fold::{Rebuilder, Replayer};
use super::ReplayError;
use crate::ledger::EventLog;
use crate::projector::registry::PROJECTIONS as DEPLOYED;
use crate::views::ViewStore;
use projections::account_sync::AccountSync;
use projections::correlation_view::CorrelationView;
use projections::order_sync::OrderSync;
use projections::product_sync::ProductSync;
use projections::Projection;
use std::sync::Arc;

/// View names of every projection, in the projector's order (what a full replay rebuilds).
pub const PROJECTIONS: &[&str] = &[
    AccountSync::NAME,
    OrderSync::NAME,
    ProductSync::NAME,
    CorrelationView::NAME,
];

fn unknown(name: &str) -> ReplayError {
    ReplayError::UnknownProjection {
        name: name.to_string(),
        known: DEPLOYED
            .iter()
            .map(|(deployed, _)| *deployed)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The view name of a projection given by deployed or view name.
pub fn view_name(name: &str) -> Result<&'static str, ReplayError> {
    DEPLOYED
        .iter()
        .find(|(deployed, view)| *deployed == name || *view == name)
        .map(|(_, view)| *view)
        .ok_or_else(|| unknown(name))
}

/// The replay fold of the projection called `name`, writing to `views`.
pub fn rebuilder(
    name: &str,
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
) -> Result<Box<dyn Replayer>, ReplayError> {
    Ok(match view_name(name)? {
        AccountSync::NAME => Box::new(Rebuilder::<AccountSync>::new(log, views)),
        OrderSync::NAME => Box::new(Rebuilder::<OrderSync>::new(log, views)),
        ProductSync::NAME => Box::new(Rebuilder::<ProductSync>::new(log, views)),
        CorrelationView::NAME => Box::new(Rebuilder::<CorrelationView>::new(log, views)),
        _ => return Err(unknown(name)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_covers_exactly_the_projectors_projections() {
        let deployed: Vec<&str> = DEPLOYED.iter().map(|(_, view)| *view).collect();
        assert_eq!(PROJECTIONS, deployed.as_slice());
        assert_eq!(view_name("account").unwrap(), AccountSync::NAME);
        assert!(view_name("nope").is_err());
    }
}
