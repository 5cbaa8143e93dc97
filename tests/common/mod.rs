//! Shared harness of the integration test binaries: the local AWS endpoint and helpers.
//! Each test binary declares `mod common;` and uses what it needs.

pub mod moto;
