//! `ledger replay` against DynamoDB (moto), through the real binary: every scenario of
//! `tests/common/replay_scenarios.rs` on a fresh table prefix, so the `by-time` read order,
//! DynamoDB checkpoints, namespaces and `--verify` behave exactly as on the embedded store.

mod common;

use common::replay_scenarios::Backend;

replay_tests!(Backend::DynamoDb);
