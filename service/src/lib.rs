//! Sync Ledger service: the ports and adapters around the pure `projections` core that the
//! Lambda functions are made of — ledger and view stores, ingest mapping, connectors, the
//! projector runner, replay, redrive, token rotation, audit and the Lambda handlers. Only production code lives here:
//! the CLI, the sandbox and the bench harness are other crates of the workspace.
#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
pub mod connectors;
pub mod ingest;
pub mod lambda;
pub mod ledger;
pub mod projector;
pub mod reconcile;
pub mod redrive;
pub mod replay;
pub mod rotation;
pub mod views;
pub mod worker;

pub use projections;
