//! Lambda handlers, one module per function, generic over the ports (`EventLog`, secret
//! sources). Handlers hold no business rules and no AWS client construction: mains do that.

pub mod audit_api;
pub mod bootstrap;
pub mod emf;
pub mod give_up;
pub mod ingest;
pub mod projector;
pub mod token_rotator;
