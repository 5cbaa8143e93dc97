//! `ledger replay` on the embedded store, through the real binary: every scenario of
//! `tests/common/replay_scenarios.rs` (wipe and rebuild, pure fold, checkpoint resume,
//! `--verify`, `--into` + `--switch`, `--from`, an unknown projection) on a fresh store in a
//! temp dir.

mod common;

use common::replay_scenarios::Backend;

replay_tests!(Backend::Sqlite);
