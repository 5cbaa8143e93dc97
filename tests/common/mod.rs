//! Shared harness of the integration test binaries: the `EventLog` conformance suite, the
//! local AWS endpoint and helpers. Each test binary declares `mod common;` and uses what it
//! needs; nothing here mocks AWS.
#![allow(dead_code)]

pub mod conformance;
pub mod fault_world;
pub mod ingest_fixtures;
pub mod ingest_store;
pub mod moto;
