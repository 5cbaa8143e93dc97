//! Shared integration-test harness: the `EventLog` conformance suite and the helpers that
//! start real services. Test binaries include it with `mod common;`; nothing here mocks AWS.
#![allow(dead_code)]

pub mod conformance;
