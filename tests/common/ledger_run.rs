//! One run of the real `ledger` binary, as a user runs it: `LEDGER_STORE` set to the store
//! under test and `RUST_LOG` removed (so stderr holds only what the command itself reports),
//! and the checks every CLI test makes of its output. It starts no store and asserts only
//! what `Run::ok` is asked to.

use std::process::{Command, Output};

/// `ledger <args>` against `store` (a `LEDGER_STORE` value); the caller may add more env
/// (e.g. the moto endpoint) before running it.
pub fn ledger_command(store: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
    command
        .args(args)
        .env("LEDGER_STORE", store)
        .env_remove("RUST_LOG");
    command
}

/// What a finished `ledger` run printed and how it exited.
pub struct Run(pub Output);

impl Run {
    /// Runs `command` to the end.
    pub fn of(mut command: Command) -> Self {
        Run(command.output().expect("run ledger"))
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    /// The run itself, after asserting it succeeded (the failure shows both streams).
    pub fn ok(self) -> Self {
        assert!(
            self.0.status.success(),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.0.status,
            self.stdout(),
            self.stderr()
        );
        self
    }
}
