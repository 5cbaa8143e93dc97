//! The projections' names: the deployed name of each (the template's `PROJECTION` values)
//! and the name its view items and outcomes are stored under. A leaf module, so code that
//! only names projections (the give-up consumer) does not reach the runners and connectors.

use projections::account_sync::AccountSync;
use projections::correlation_view::CorrelationView;
use projections::order_sync::OrderSync;
use projections::product_sync::ProductSync;
use projections::Projection;

/// The deployed name of each projection (the template's `PROJECTION` values) and the name
/// its view items are stored under.
pub const PROJECTIONS: &[(&str, &str)] = &[
    ("account", AccountSync::NAME),
    ("order", OrderSync::NAME),
    ("product", ProductSync::NAME),
    ("correlation", CorrelationView::NAME),
];

/// The deployed names, for messages.
pub fn known() -> String {
    PROJECTIONS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The view name of a projection given by deployed name or view name.
pub fn view_name(name: &str) -> Option<&'static str> {
    PROJECTIONS
        .iter()
        .find(|(deployed, view)| *deployed == name || *view == name)
        .map(|(_, view)| *view)
}
