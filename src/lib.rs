//! Sync Ledger service: the shell of ports and adapters around the pure `projections` core.
//! Ledger adapters, connectors, Lambda handlers, the sandbox and the CLI live here; the
//! decisions they execute live in `projections`.
#![forbid(unsafe_code)]

pub mod audit;
pub mod bench;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod ingest;
pub mod lambda;
pub mod ledger;
pub mod projector;
pub mod redrive;
pub mod replay;
pub mod rotation;
pub mod sandbox;
pub mod views;
pub mod worker;

pub use projections;
