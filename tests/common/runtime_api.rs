//! The Lambda Runtime API emulator for tests: `sandbox::runtime_api` (shared with
//! `ledger bench`, which measures init time and peak RSS with it), with a failure to start the
//! function as a panic, as tests want it. It asserts nothing itself.
//!
//! Use from a test binary: `mod common;` then `use common::runtime_api;`.
#![allow(dead_code, unused_imports)]

pub use sandbox::runtime_api::{Invocation, FUNCTION_ARN_PREFIX, INVOCATION_TIMEOUT};
use std::ops::Deref;
use std::path::Path;

/// A spawned Lambda binary and the Runtime API it talks to. Dropping it kills the process.
pub struct LambdaProcess(sandbox::runtime_api::LambdaProcess);

impl LambdaProcess {
    /// Starts a Runtime API on a free port and spawns `binary` against it, with the
    /// environment Lambda sets plus `env`, which wins on conflict.
    pub async fn spawn(
        binary: impl AsRef<Path>,
        function_name: &str,
        env: &[(String, String)],
    ) -> Self {
        match sandbox::runtime_api::LambdaProcess::spawn(binary, function_name, env).await {
            Ok(process) => Self(process),
            Err(e) => panic!("{e}"),
        }
    }
}

impl Deref for LambdaProcess {
    type Target = sandbox::runtime_api::LambdaProcess;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
