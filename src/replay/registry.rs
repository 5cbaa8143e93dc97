//! The projections replay can rebuild, by name. Adding a projection to the product means one
//! line here (and one in the projector's list): the fold itself is generic.

use super::fold::{Rebuilder, Replayer};
use super::ReplayError;
use crate::ledger::EventLog;
use crate::views::ViewStore;
use projections::account_sync::AccountSync;
use projections::correlation_view::CorrelationView;
use projections::Projection;
use std::sync::Arc;

/// Every projection replay knows, in the order a full replay rebuilds them.
pub const PROJECTIONS: &[&str] = &[AccountSync::NAME, CorrelationView::NAME];

/// The replay fold of the projection called `name`, writing to `views`.
pub fn rebuilder(
    name: &str,
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
) -> Result<Box<dyn Replayer>, ReplayError> {
    Ok(match name {
        AccountSync::NAME => Box::new(Rebuilder::<AccountSync>::new(log, views)),
        CorrelationView::NAME => Box::new(Rebuilder::<CorrelationView>::new(log, views)),
        other => {
            return Err(ReplayError::UnknownProjection {
                name: other.to_string(),
                known: PROJECTIONS.join(", "),
            })
        }
    })
}
