//! The projector shell: runs the pure projections of `projections` against the ledger, the
//! view store and the external systems. `runner` orders and applies events, `effects` makes
//! the calls. Entry points (Lambda handler, `ledger worker`) live elsewhere and call `process`.

pub mod bulk;
pub mod catalog;
pub mod effects;
pub mod names;
pub mod registry;
pub mod runner;
pub mod schedule;

pub use effects::{Effects, TransientCallFailure};
pub use registry::{build, build_selected, ProjectorDeps, UnknownProjection, PROJECTIONS};
pub use runner::{
    BatchOutcome, CrashHook, CrashPoint, EventStatus, Projector, Runner, RunnerSettings,
};
