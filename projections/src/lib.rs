//! Pure domain core of Sync Ledger: the event envelope and catalogue, folds and
//! process-manager decisions. This crate must never do I/O, know about AWS, or need tokio:
//! every fold and decision is a function of its inputs so replay and live projection agree.
//! The time a decision stamps on its outcomes comes in as `now`; outcome event ids are
//! derived from their cause (`EventId::derived`). The only clock readers here are the fresh-id
//! constructors (`EventId::new`, `CorrelationId::new`, `NewEvent::from_domain`), which exist
//! for the edge that records what it receives.
#![forbid(unsafe_code)]

pub mod account_sync;
pub mod catalogue;
pub mod commands;
pub mod correlation_view;
pub mod envelope;
pub mod ids;
pub mod order_sync;
pub mod partition;
pub mod product_sync;
pub mod projection;
pub mod reconcile;
pub mod reconcile_events;
pub mod upcast;

pub use catalogue::{DomainEvent, EventType};
pub use envelope::{EnvelopeError, NewEvent, RecordedEvent};
pub use ids::{CorrelationId, EventId, IdError, Source, SourceEventId, StreamId};
pub use partition::Partition;
pub use projection::{Apply, Decision, Handled, Projection, Side, ViewItem, Views};
