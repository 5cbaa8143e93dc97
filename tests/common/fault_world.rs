//! A sync world for the fault suites: a sandbox (CRM + Billing), an embedded ledger in a
//! temp dir, and the real `ledger` binary run against both. It captures what every run
//! printed so suites can scan it; it never fakes a store or an API.

use sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::sync::Mutex;
use sync_ledger::ledger::{EventLog, SqliteLedger};
use sync_ledger::projections::RecordedEvent;
use sync_ledger::views::sqlite::SqliteViewStore;
use sync_ledger::views::{ViewKey, ViewStore};
use tokio::process::Command;

pub struct World {
    pub dir: tempfile::TempDir,
    pub sandbox: Sandbox,
    /// `RUST_LOG` of the child processes.
    pub log_level: String,
    /// Everything the `ledger` processes printed (stdout and stderr), in run order.
    pub captured: Mutex<String>,
}

/// People create `accounts` CRM accounts and edit each `edits` times; returns the CRM id
/// and the emitted change events of each account, in emission order.
pub fn crm_activity(sandbox: &Sandbox, accounts: usize, edits: usize) -> Vec<(String, Vec<Value>)> {
    let mut per_account = Vec::new();
    for i in 0..accounts {
        let id = sandbox
            .crm_user_create(
                "Account",
                fields(json!({"Name": format!("Account {i}"), "CurrencyIsoCode": "USD"})),
            )
            .unwrap();
        for e in 0..edits {
            sandbox
                .crm_user_update(
                    "Account",
                    &id,
                    fields(json!({"Name": format!("Account {i} v{e}")})),
                )
                .unwrap();
        }
        let bodies = sandbox.drain_outbox().into_iter().map(|o| o.body).collect();
        per_account.push((id, bodies));
    }
    per_account
}

/// The `AccountSynced` outcomes among `events`; panics on one recorded twice for one cause
/// on one stream.
pub fn count_outcomes(events: &[RecordedEvent]) -> usize {
    let mut causes = BTreeSet::new();
    let synced: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "AccountSynced")
        .collect();
    for e in &synced {
        // One per stream (the outcome is also mirrored onto the Billing account's stream).
        let cause = (
            e.stream_id.as_str().to_string(),
            e.causation_id,
            e.payload["action"].to_string(),
        );
        assert!(causes.insert(cause), "duplicate outcome: {e:?}");
    }
    synced.len()
}

pub fn fields(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

impl World {
    pub async fn new() -> Self {
        Self::with_config(SandboxConfig::default(), "warn").await
    }

    pub async fn with_config(config: SandboxConfig, log_level: &str) -> Self {
        let w = Self {
            dir: tempfile::tempdir().unwrap(),
            sandbox: Sandbox::start(config).await.unwrap(),
            log_level: log_level.to_string(),
            captured: Mutex::new(String::new()),
        };
        w.ledger(&["migrate"]).await;
        w
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    /// The connectors' environment of every `ledger` run (and of in-process runners).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("RUST_LOG", self.log_level.clone())];
        env.extend(self.sandbox.connectors_env());
        env
    }

    /// `ledger <args>` against this world, with the connectors' environment set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledger"));
        cmd.args(["--store", &format!("sqlite://{}", self.db().display())])
            .args(args)
            .envs(self.env())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `ledger <args>` to completion; panics on failure; returns its stdout.
    pub async fn ledger(&self, args: &[&str]) -> String {
        let out = self
            .command(args)
            .output()
            .await
            .expect("the ledger binary runs");
        self.capture(&out);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "ledger {args:?} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    pub fn capture(&self, out: &Output) {
        let mut captured = self.captured.lock().unwrap();
        captured.push_str(&String::from_utf8_lossy(&out.stdout));
        captured.push_str(&String::from_utf8_lossy(&out.stderr));
    }

    /// Records `deliveries` (one JSON body per line) with `ledger ingest`.
    pub async fn ingest(&self, deliveries: &[Value]) {
        let path = self
            .dir
            .path()
            .join(format!("in-{}.jsonl", uuid::Uuid::now_v7()));
        let text: String = deliveries.iter().map(|b| format!("{b}\n")).collect();
        std::fs::write(&path, text).unwrap();
        self.ledger(&["ingest", path.to_str().unwrap()]).await;
    }

    /// Delivers what the sandbox emitted; returns how many bodies.
    pub async fn deliver_outbox(&self) -> usize {
        let bodies: Vec<Value> = self
            .sandbox
            .drain_outbox()
            .into_iter()
            .map(|e| e.body)
            .collect();
        if !bodies.is_empty() {
            self.ingest(&bodies).await;
        }
        bodies.len()
    }

    pub const WORKER: &[&str] = &[
        "worker",
        "--until-idle",
        "--batch-window-ms",
        "0",
        "--retry-backoff-ms",
        "10",
        "--max-retries",
        "3",
    ];

    pub async fn work(&self) -> String {
        self.ledger(Self::WORKER).await
    }

    /// Projects, delivers what the systems emitted (our write-backs' change events), and
    /// repeats until nothing more is emitted; bounded so a ping-pong fails the test.
    pub async fn settle(&self) {
        for _ in 0..8 {
            self.work().await;
            if self.deliver_outbox().await == 0 {
                return;
            }
        }
        panic!("sync did not settle after 8 rounds: ping-pong?");
    }

    /// People create `accounts` CRM accounts and edit each `edits` times; returns the CRM id
    /// and the emitted change events of each account, in emission order.
    pub fn crm_activity(&self, accounts: usize, edits: usize) -> Vec<(String, Vec<Value>)> {
        crm_activity(&self.sandbox, accounts, edits)
    }

    pub async fn all_events(&self) -> Vec<RecordedEvent> {
        let log = SqliteLedger::open(self.db()).unwrap();
        log.read_all(None, None, 1_000_000).await.unwrap()
    }

    pub async fn events_of_type(&self, event_type: &str) -> Vec<RecordedEvent> {
        let mut all = self.all_events().await;
        all.retain(|e| e.event_type == event_type);
        all
    }

    /// CRM id -> (Billing account name, linked both ways in the correlation view). Panics if
    /// a CRM account has two Billing accounts.
    pub async fn billing_state(&self) -> BTreeMap<String, (String, bool)> {
        let views = SqliteViewStore::open(&self.db()).unwrap();
        let link = |side: &str, id: &str| {
            ViewKey::new("correlation", &format!("link#{side}#{id}")).unwrap()
        };
        let mut state = BTreeMap::new();
        for account in self.sandbox.billing_accounts() {
            let crm_id = account
                .crm_id
                .clone()
                .expect("every synced Billing account names its CRM id");
            let crm_link = views.get(&link("crm", &crm_id)).await.unwrap();
            let billing_link = views.get(&link("billing", &account.id)).await.unwrap();
            let linked = crm_link
                .is_some_and(|l| l.state["links"][0]["counterpart_id"] == json!(account.id))
                && billing_link
                    .is_some_and(|l| l.state["links"][0]["counterpart_id"] == json!(crm_id));
            let previous = state.insert(crm_id.clone(), (account.name.clone(), linked));
            assert!(previous.is_none(), "two Billing accounts for CRM {crm_id}");
        }
        state
    }

    /// What a sync left behind: Billing state and links, and how many `AccountSynced`
    /// outcomes. Panics on an outcome recorded twice for one cause on one stream.
    pub async fn sync_outcome(&self) -> (BTreeMap<String, (String, bool)>, usize) {
        let synced = count_outcomes(&self.all_events().await);
        (self.billing_state().await, synced)
    }

    /// Billing account create calls made, and the distinct idempotency keys they carried.
    pub fn billing_creates(&self) -> (usize, usize) {
        let log = self.sandbox.call_log();
        let posts: Vec<_> = log
            .iter()
            .filter(|c| c.label() == "POST /v1/accounts")
            .collect();
        let keys: BTreeSet<_> = posts
            .iter()
            .filter_map(|c| c.idempotency_key.clone())
            .collect();
        (posts.len(), keys.len())
    }
}
