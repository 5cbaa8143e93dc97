//! The `ledger` command line as a library: each subcommand in `cli/`, called by
//! `src/bin/ledger.rs`. The service itself is the `sync_ledger` crate (`service/`); the
//! simulators (`sandbox/`) and the bench harness (`bench/`) are crates of their own, so the
//! Lambda functions link none of this.
#![forbid(unsafe_code)]

pub mod cli;
