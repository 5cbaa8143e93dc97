//! Which projections exist and how to build a runner for one by name (`PROJECTION`,
//! `--projection`): `account`, `correlation`, ... It only wires; the projections themselves
//! live in `projections`.

use super::effects::Effects;
use super::runner::{Projector, Runner, RunnerSettings};
use crate::ledger::EventLog;
use crate::views::ViewStore;
use projections::account_sync::AccountSync;
use projections::correlation_view::CorrelationView;
use projections::order_sync::OrderSync;
use projections::product_sync::ProductSync;
use projections::Projection;
use std::sync::Arc;

pub use super::names::{known, view_name, PROJECTIONS};

/// What every runner needs.
#[derive(Clone)]
pub struct ProjectorDeps {
    pub log: Arc<dyn EventLog>,
    pub views: Arc<dyn ViewStore>,
    pub effects: Arc<dyn Effects>,
    pub settings: RunnerSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("projection {given:?} is unknown; known: {known}")]
pub struct UnknownProjection {
    pub given: String,
    pub known: String,
}

fn unknown(given: &str) -> UnknownProjection {
    UnknownProjection {
        given: given.to_string(),
        known: known(),
    }
}

/// The view names `all` or one name selects.
pub fn selected_view_names(selection: &str) -> Result<Vec<&'static str>, UnknownProjection> {
    if selection == "all" {
        Ok(PROJECTIONS.iter().map(|(_, view)| *view).collect())
    } else {
        Ok(vec![view_name(selection).ok_or_else(|| unknown(selection))?])
    }
}

/// The runner of one projection, by deployed name or view name.
pub fn build(name: &str, deps: &ProjectorDeps) -> Result<Arc<dyn Projector>, UnknownProjection> {
    let view_name = view_name(name).ok_or_else(|| unknown(name))?;
    let runner: Arc<dyn Projector> = match view_name {
        AccountSync::NAME => Arc::new(runner::<AccountSync>(deps)),
        OrderSync::NAME => Arc::new(runner::<OrderSync>(deps)),
        ProductSync::NAME => Arc::new(runner::<ProductSync>(deps)),
        CorrelationView::NAME => Arc::new(runner::<CorrelationView>(deps)),
        _ => return Err(unknown(name)),
    };
    Ok(runner)
}

/// `all` or one name.
pub fn build_selected(
    selection: &str,
    deps: &ProjectorDeps,
) -> Result<Vec<Arc<dyn Projector>>, UnknownProjection> {
    if selection == "all" {
        PROJECTIONS
            .iter()
            .map(|(name, _)| build(name, deps))
            .collect()
    } else {
        Ok(vec![build(selection, deps)?])
    }
}

fn runner<P>(deps: &ProjectorDeps) -> Runner<P>
where
    P: Projection + 'static,
    P::State: Send + Sync,
{
    Runner::new(
        deps.log.clone(),
        deps.views.clone(),
        deps.effects.clone(),
        deps.settings,
    )
}
