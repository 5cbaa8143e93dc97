//! The one shared harness of the root package's integration tests. Every test binary that
//! needs a helper declares `mod common;` (this file, by the `tests/common/mod.rs`
//! convention) and names what it uses, e.g. `use common::moto::moto;` or
//! `use common::sync_world;`; no binary includes a harness file by `#[path]`. Nothing here
//! mocks AWS or an external API. `tests/fixtures/` holds data only (see its README).
//!
//! Where each helper lives:
//!
//! | module / file | what |
//! |---|---|
//! | `conformance` | `EventLog` conformance bodies + `conformance_tests!(fresh_store)` (both stores) |
//! | `views_conformance` | `ViewStore` conformance bodies + `all_views_conformance_tests!(make)` |
//! | `replay_scenarios` | `ledger replay` bodies + `replay_tests!(backend)` (both stores) |
//! | `sync_world` | end-to-end sync world (sandbox + `ledger` binary) and its scenarios; the embedded store |
//! | `sync_world_dynamodb` | the same world on DynamoDB (moto) |
//! | `console` | the console tests' story (ingest + worker) and `ledger serve` over it |
//! | `cdp` | a small DevTools-protocol driver for headless Chromium (the console's browser test) |
//! | `reconcile_world` | `ledger reconcile` scenarios on a sync world (either store) |
//! | `bounded_views` | "no view item grows with history" bodies (both stores; console pages) |
//! | `fault_world` | the fault suites' world (sandbox, embedded ledger, captured output) |
//! | `ledger_run` | one run of the real `ledger` binary and its output checks |
//! | `ingest_fixtures` | `tests/fixtures` files and the Lambda trigger envelopes around them |
//! | `ingest_store` | DynamoDB ledgers for the ingest tests (fresh on moto, or unreachable) |
//! | `moto` | the patched moto server (`moto_server.py`), one per test binary, and its env |
//! | `runtime_api` | the Lambda Runtime API emulator, starting a Lambda binary |
//! | `params_extension` | the Parameters and Secrets Lambda Extension stand-in (SSM on moto) |
//! | `template` | `template.yaml` as JSON (`template_json.py`) and each function's environment |
//! | `moto_server.py` | moto launcher with the project's patches (proved by `tests/moto_patches.rs`) |
//! | `describe_tables.py` | boto3's view of the ledger tables, for `tests/conformance_dynamodb.rs` |
//! | `bench_moto_transactions.py` | the measurement behind moto patch (c) (BENCHMARKS.md) |
//!
//! Each binary uses only part of this, so unused items are expected here.
#![allow(dead_code)]

pub mod bounded_views;
pub mod cdp;
pub mod conformance;
pub mod console;
pub mod fault_world;
pub mod ingest_fixtures;
pub mod ingest_store;
pub mod ledger_run;
pub mod moto;
pub mod params_extension;
pub mod reconcile_world;
pub mod replay_scenarios;
pub mod runtime_api;
pub mod sync_world;
pub mod sync_world_dynamodb;
pub mod template;
pub mod views_conformance;
