//! `ledger demo`: the whole story on a fresh embedded store in a temp dir and an in-process
//! CRM + Billing sandbox — no AWS, never the configured store. The sandbox's CRM and Billing
//! emit a business day (people creating accounts and orders, a catalog and a price change),
//! the relay delivers it (twice, out of order, with a poison message) through the real ingest
//! path, the projectors sync it through a 429 burst and a real token rotation, then the
//! correlation view, one audit chain, and a wipe + replay that rebuilds identical views with
//! no external call. It only wires the library and prints; it decides nothing.

use super::ingest::ingest_lines;
use super::CliError;
use projections::correlation_view::LinkItem;
use projections::reconcile::Prefer;
use projections::{CorrelationId, RecordedEvent, StreamId};
use sandbox::{
    Charge, Faults, Price, Product, RatePlan, Sandbox, SandboxConfig, System, STANDARD_PRICEBOOK_ID,
};
use serde_json::{json, Map, Value};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use sync_ledger::audit::{audit, render_text, AuditId};
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::connectors::params::{EmbeddedParameters, ParameterStore};
use sync_ledger::connectors::{
    ApiToken, BillingClient, ClientConfig, CrmClient, ServiceName, TokenProvider, TokenSource,
};
use sync_ledger::ledger::{migrate::migrate, open_store, EventLog};
use sync_ledger::projector::effects::ConnectorEffects;
use sync_ledger::projector::{build_selected, Effects, ProjectorDeps, RunnerSettings};
use sync_ledger::reconcile::{reconcile, ReconcileOptions};
use sync_ledger::replay::{self, snapshot, ReplayRequest, ViewDigest};
use sync_ledger::rotation::{ServiceSettings, TokenRotation};
use sync_ledger::views::{open_views, ViewNamespace, ViewStore};
use sync_ledger::worker::{feed, StopWhen, WorkerSettings};

/// A poison message: a CRM change that names no account id. It is rejected with the field
/// and reason, and kept (as `IngestRejected`) so nothing is lost.
const POISON: &str = r#"{"stream_id":"crm-account-001Dn00000BrokIAH","event_type":"CrmAccountUpserted","source":"crm","source_event_id":"AccountChangeEvent:000000000000009999","correlation_id":"0193a0b4-1c00-7000-8000-000000000099","occurred_at":"2026-11-26T12:00:00Z","payload":{"name":"No Id Inc"}}"#;

const SKU: &str = "SKU-PLATFORM";

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Run in this directory and keep its store (`<dir>/ledger.db`) for `ledger serve
    /// --store sqlite://<dir>/ledger.db`; the directory must not hold a store yet.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<std::path::PathBuf>,
}

pub async fn run(args: &DemoArgs) -> Result<ExitCode, CliError> {
    let dir = match &args.keep {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("sync-ledger-demo-{}", uuid::Uuid::new_v4())),
    };
    // The demo's story must be the whole store: never mix it into an existing one.
    if args.keep.is_some() && dir.join("ledger.db").exists() {
        return Err(CliError::Invalid(format!(
            "--keep {}: already holds ledger.db; choose an empty or new directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let result = run_in(&dir).await;
    if args.keep.is_some() {
        if result.is_ok() {
            let db = dir.join("ledger.db");
            let db = db.canonicalize().unwrap_or(db);
            println!(
                "
kept the store: ledger serve --store sqlite://{} (then open http://127.0.0.1:8080/)",
                db.display()
            );
        }
    } else {
        // Best effort: a leftover temp dir is harmless and must not hide the demo's result.
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn invalid(e: impl std::fmt::Display) -> CliError {
    CliError::Invalid(e.to_string())
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The Billing catalog's one product, at `price` USD a month.
fn platform(price: f64) -> Product {
    Product {
        id: String::new(),
        sku: SKU.into(),
        name: "Platform Subscription".into(),
        effective_end_date: None,
        product_rate_plans: vec![RatePlan {
            id: String::new(),
            name: "Platform Monthly".into(),
            product_rate_plan_charges: vec![Charge {
                id: String::new(),
                name: "Seats".into(),
                pricing: vec![Price {
                    currency: "USD".into(),
                    price,
                }],
            }],
        }],
    }
}

/// Everything the demo runs against.
struct Demo {
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
    sandbox: Sandbox,
    rotator: TokenRotation,
    effects: Arc<dyn Effects>,
    /// The clients a reconciliation reads through.
    readers: (CrmClient, BillingClient),
}

async fn run_in(dir: &std::path::Path) -> Result<ExitCode, CliError> {
    let store = StoreUrl::Sqlite(dir.join("ledger.db"));
    // Loaded only if a DynamoDB store asks for it; shared by every client of this run.
    let aws = AwsConfig::lazy();
    migrate(&store, &aws).await?;
    let log = open_store(&store, &aws).await?;
    let views = open_views(&store, &aws).await?;
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .map_err(invalid)?;
    // The local stand-in for SSM Parameter Store: the rotator writes it, the clients read it.
    let params = EmbeddedParameters::open(&dir.join("params.db")).map_err(invalid)?;
    let mut services = Vec::new();
    for (service, system) in [
        (ServiceName::crm(), System::Crm),
        (ServiceName::billing(), System::Billing),
    ] {
        // What an operator does once with `aws ssm put-parameter`: store the OAuth client.
        let client = sandbox.config().credentials(system);
        let id_param = format!("/oauthClients/{service}/clientId");
        let secret_param = format!("/oauthClients/{service}/clientSecret");
        let id = ApiToken::new(client.client_id.clone()).map_err(invalid)?;
        params
            .put(&id_param, &id, "OAuth client id")
            .await
            .map_err(invalid)?;
        let secret = ApiToken::new(client.client_secret.expose_secret()).map_err(invalid)?;
        params
            .put(&secret_param, &secret, "OAuth client secret")
            .await
            .map_err(invalid)?;
        services.push(ServiceSettings {
            service,
            token_url: sandbox.token_url(system),
            client_id_parameter: id_param,
            client_secret_parameter: secret_param,
        });
    }
    let params: Arc<EmbeddedParameters> = Arc::new(params);
    let salt = ApiToken::new(uuid::Uuid::new_v4().to_string()).map_err(invalid)?;
    let rotator = TokenRotation::new(
        log.clone(),
        params.clone(),
        reqwest::Client::new(),
        services,
        salt,
    )
    .without_metrics();
    let tokens: Arc<dyn TokenSource> =
        Arc::new(TokenProvider::new(params, TokenProvider::DEFAULT_TTL));
    let crm = CrmClient::new(
        ClientConfig::new(sandbox.url(), ServiceName::crm()),
        tokens.clone(),
    )
    .map_err(invalid)?;
    let billing = BillingClient::new(
        ClientConfig::new(sandbox.url(), ServiceName::billing()),
        tokens.clone(),
    )
    .map_err(invalid)?;
    // The reconciliation's readers (the effects own the writers' pair).
    let readers = (
        CrmClient::new(
            ClientConfig::new(sandbox.url(), ServiceName::crm()),
            tokens.clone(),
        )
        .map_err(invalid)?,
        BillingClient::new(
            ClientConfig::new(sandbox.url(), ServiceName::billing()),
            tokens,
        )
        .map_err(invalid)?,
    );
    let effects: Arc<dyn Effects> = Arc::new(ConnectorEffects::new(
        crm,
        billing,
        Some(STANDARD_PRICEBOOK_ID.to_string()),
        "USD".to_string(),
    ));
    let demo = Demo {
        log,
        views,
        sandbox,
        rotator,
        effects,
        readers,
    };
    let result = story(&demo).await;
    demo.sandbox.shutdown().await;
    result
}

async fn story(d: &Demo) -> Result<ExitCode, CliError> {
    println!("Sync Ledger demo: a fresh embedded store and an in-process CRM + Billing sandbox (no AWS).");

    println!("\n1. The token rotator gets API tokens from the sandbox's OAuth endpoints into the local parameter store:");
    rotate(d).await?;

    // 2. The day, as the systems emit it. The relay delivers every CRM event twice.
    let s = &d.sandbox;
    s.upsert_product(platform(499.0));
    s.set_faults(
        System::Crm,
        Faults {
            duplicate_deliveries: true,
            ..Faults::default()
        },
    );
    let crm = |sobject: &str, value: Value| s.crm_user_create(sobject, fields(value));
    let acme = crm(
        "Account",
        json!({"Name": "Acme Corporation", "CurrencyIsoCode": "USD"}),
    )
    .map_err(invalid)?;
    let globex = crm(
        "Account",
        json!({"Name": "Globex Ltd", "CurrencyIsoCode": "USD"}),
    )
    .map_err(invalid)?;
    let mut early = s.drain_outbox();
    // Globex's account change is held up in the relay: its order overtakes it.
    let (late, first): (Vec<_>, Vec<_>) = early
        .drain(..)
        .partition(|e| e.body.to_string().contains(&globex) && e.event_type.contains("Account"));
    let order = |account: &str, seats: u32| {
        crm(
            "Order",
            json!({"AccountId": account, "Status": "Activated", "EffectiveDate": "2026-12-01",
                "CurrencyIsoCode": "USD", "OrderItems": [{"ProductCode": SKU, "Quantity": seats}]}),
        )
    };
    let acme_order = order(&acme, 25).map_err(invalid)?;
    let globex_order = order(&globex, 10).map_err(invalid)?;
    s.set_faults(System::Crm, Faults::default());
    let mut batch: Vec<String> = first.iter().map(|e| e.body_text()).collect();
    batch.extend(s.drain_outbox().iter().map(|e| e.body_text()));
    batch.push(POISON.to_string());
    let day = ingest_lines(
        d.log.as_ref(),
        (batch.join("\n") + "\n").as_bytes(),
        "business day",
    )
    .await?;
    println!(
        "\n2. A business day arrives: Billing publishes product {SKU} (USD 499/month); in the CRM"
    );
    println!("   people create accounts Acme Corporation and Globex Ltd and an order for each. The relay");
    println!("   delivers every CRM event twice, Globex's order BEFORE Globex's account, plus a poison message:");
    println!(
        "   {} events recorded; {} duplicate deliveries recorded nothing",
        day.appended, day.already_recorded
    );
    for rejected in &day.rejected {
        println!("   poison message rejected and kept: {rejected}");
    }

    // 3. Projectors, through a 429 burst.
    s.set_faults(
        System::Billing,
        Faults {
            throttle_next: 3,
            retry_after_secs: 0,
            ..Faults::default()
        },
    );
    let first_pass = run_projectors(d).await?;
    println!("\n3. Projectors sync it (Billing answers 3 calls with 429 + Retry-After; the client waits, retries):");
    let account_line = |who: &str, billing: String| {
        println!(
            "   {:<34} -> Billing account {billing}",
            format!("account {who}")
        );
    };
    let order_line = |id: &str, who: &str, state: String| {
        println!("   {:<34} -> {state}", format!("order {id} ({who})"));
    };
    account_line("Acme Corporation", account_link(d, &acme).await?);
    order_line(
        &acme_order,
        "Acme",
        order_state(d, &order_stream_of(&acme_order)).await?,
    );
    order_line(
        &globex_order,
        "Globex",
        order_state(d, &order_stream_of(&globex_order)).await?,
    );

    // 4. Every token is revoked; the real rotator runs again; the clients pick the new one up.
    s.expire_tokens(None);
    println!("\n4. Every API token is revoked; the token rotator runs again (the ledger keeps fingerprints only):");
    rotate(d).await?;

    // 5. The rest of the day: the late account, a price change, and the systems' echoes of
    // our own writes, until nothing new happens.
    s.upsert_product(platform(549.0));
    let mut late_batch: Vec<String> = late.iter().map(|e| e.body_text()).collect();
    let mut rest = (0, 0);
    for _ in 0..8 {
        late_batch.extend(s.drain_outbox().iter().map(|e| e.body_text()));
        if late_batch.is_empty() {
            break;
        }
        ingest_lines(
            d.log.as_ref(),
            (late_batch.join("\n") + "\n").as_bytes(),
            "relay",
        )
        .await?;
        late_batch.clear();
        let pass = run_projectors(d).await?;
        rest = (rest.0 + pass.0, rest.1 + pass.1);
    }
    let calls = s.call_log();
    let status = |code: u16| calls.iter().filter(|c| c.status == code).count();
    let all = everything(d.log.as_ref()).await?;
    let count = |t: &str| all.iter().filter(|e| e.event_type == t).count();
    println!("\n5. The rest of the day: Globex's account arrives late, Billing raises the price to USD 549, and");
    println!("   the systems echo our own writes back (each recognised and not synced back):");
    account_line("Globex Ltd", account_link(d, &globex).await?);
    order_line(
        &globex_order,
        "Globex",
        order_state(d, &order_stream_of(&globex_order)).await?,
    );
    println!(
        "   CRM pricebook {SKU}: USD {}; {} echoes suppressed",
        crm_price(s),
        count("EchoSuppressed")
    );
    println!(
        "   ledger: {} events, SyncFailed: {}; projectors: {} deliveries retried, {} given up",
        all.len(),
        count("SyncFailed"),
        first_pass.0 + rest.0,
        first_pass.1 + rest.1,
    );
    println!(
        "   sandbox: {} calls, {} answered 429, {} answered 401 until the rotated token was read",
        calls.len(),
        status(429),
        status(401)
    );

    // 6. The correlation view.
    println!("\n6. Correlation view (each id resolves to its counterpart):");
    for item in d.views.list("correlation").await? {
        let Some(crm_id) = item.key.key().strip_prefix("link#crm#") else {
            continue; // every link has a CRM-side and a Billing-side item: show one
        };
        if crm_id.contains('#') {
            continue; // a history or traces page of a link item
        }
        let Ok(link) = serde_json::from_value::<LinkItem>(item.state) else {
            continue;
        };
        if let Some(l) = link.links.first() {
            println!(
                "   {:<15} crm {crm_id:<20} <-> billing {}",
                link.entity.as_deref().unwrap_or("record"),
                l.counterpart_id
            );
        }
    }

    // 7. The audit chain of the order that waited.
    let order_stream = stream(&format!("crm-order-{globex_order}"))?;
    let trace = d.log.read_stream(&order_stream, 1).await?[0].correlation_id;
    let report = audit(
        d.log.as_ref(),
        d.views.as_ref(),
        &AuditId::Correlation(trace),
    )
    .await?;
    println!("\n7. Audit of the order that waited for its account (`ledger audit {trace}`):");
    for line in render_text(&report).lines().skip(1) {
        println!("   {line}");
    }

    // 8. Drift behind the sync's back, found and repaired through the projectors.
    reconcile_step(d, &acme).await?;

    // 9. Recovery: wipe the views, replay the log, compare.
    let mut before = Vec::new();
    for name in replay::PROJECTIONS {
        before.push(ViewDigest::of(&snapshot(d.views.as_ref(), name).await?));
    }
    let calls_before = s.calls().total;
    let mut request = ReplayRequest::new(ViewNamespace::live());
    request.checkpoints = false;
    let reports = replay::replay(
        d.log.clone(),
        d.views.clone(),
        &request,
        &mut replay::Silent,
    )
    .await?;
    let replay_calls = s.calls().total - calls_before;
    println!("\n9. Recovery: wipe every view and replay the log (fold only, no decisions):");
    let mut identical = replay_calls == 0;
    for (report, live) in reports.iter().zip(&before) {
        let rebuilt = report
            .digest
            .clone()
            .unwrap_or(ViewDigest::of(&Default::default()));
        let same = &rebuilt == live;
        identical &= same;
        println!(
            "   {:<12} wiped {:>3} items, replayed {:>3} events -> {} {}",
            report.projection,
            report.wiped,
            report.events_read,
            rebuilt,
            if same {
                "= before"
            } else {
                "DIFFERS from before"
            }
        );
    }
    println!("   external calls during replay: {replay_calls}");
    if identical {
        let all: Vec<&str> = before.iter().map(ViewDigest::short).collect();
        println!("\nrebuilt views identical: digest {}", all.join(" "));
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nrebuilt views DIFFER from the live ones (see above)");
        Ok(ExitCode::FAILURE)
    }
}

fn stream(id: &str) -> Result<StreamId, CliError> {
    StreamId::parse(id).map_err(invalid)
}

fn order_stream_of(order: &str) -> String {
    format!("crm-order-{order}")
}

/// Someone renames Acme in Billing while the relay is down (the callout is lost); a
/// reconciliation finds it, and its repair goes through the account projector.
async fn reconcile_step(d: &Demo, acme: &str) -> Result<(), CliError> {
    let s = &d.sandbox;
    let billing_id = account_link(d, acme).await?;
    s.billing_user_update(&billing_id, "Acme Corp (EU)")
        .map_err(invalid)?;
    s.drain_outbox();
    let run = |repair| ReconcileOptions {
        dry_run: false,
        repair,
        prefer: Prefer::Newer,
        max_api_calls: None,
    };
    let (crm, billing) = &d.readers;
    let report = reconcile(
        d.log.as_ref(),
        d.views.as_ref(),
        crm,
        billing,
        &run(true),
        &mut |_, _| {},
    )
    .await?;
    println!("\n8. Acme is renamed in Billing while the relay is down; `ledger reconcile --repair` finds it:");
    for drift in &report.shown {
        println!("   {}", super::reconcile::describe(drift));
    }
    run_projectors(d).await?;
    let name = s
        .crm_records("Account")
        .into_iter()
        .find(|r| r["Id"] == json!(acme))
        .and_then(|r| r["Name"].as_str().map(str::to_string))
        .unwrap_or_default();
    let writes_before = s.calls();
    let again = reconcile(
        d.log.as_ref(),
        d.views.as_ref(),
        crm,
        billing,
        &run(false),
        &mut |_, _| {},
    )
    .await?;
    let writes = s.calls().total - writes_before.total - again.calls_crm - again.calls_billing;
    println!(
        "   repaired by the account projector: CRM now {name:?}; a second run: {} drift, {writes} write calls",
        again.drift_total()
    );
    Ok(())
}

/// Runs the rotator and prints its audit events as `ledger audit` shows them.
async fn rotate(d: &Demo) -> Result<(), CliError> {
    let run = CorrelationId::new();
    let report = d.rotator.run(run).await.map_err(invalid)?;
    let chain = audit(d.log.as_ref(), d.views.as_ref(), &AuditId::Correlation(run)).await?;
    for line in render_text(&chain).lines().skip(2) {
        println!("   {}", line.trim_start());
    }
    if !report.failed.is_empty() {
        return Err(invalid(format!(
            "token rotation failed: {:?}",
            report.failed
        )));
    }
    Ok(())
}

/// The Billing account a CRM account is linked to, per the correlation view.
async fn account_link(d: &Demo, crm_id: &str) -> Result<String, CliError> {
    let key = sync_ledger::views::ViewKey::new("correlation", &format!("link#crm#{crm_id}"))?;
    let link = d
        .views
        .get(&key)
        .await?
        .and_then(|item| serde_json::from_value::<LinkItem>(item.state).ok());
    Ok(link
        .and_then(|l| l.counterpart().map(str::to_string))
        .unwrap_or_else(|| "(not linked)".to_string()))
}

/// What the ledger says about an order's subscription create so far.
async fn order_state(d: &Demo, order_stream: &str) -> Result<String, CliError> {
    let events = d.log.read_stream(&stream(order_stream)?, 1).await?;
    let created = events.iter().find(|e| {
        e.event_type == "OrderSynced"
            && e.payload["action"] == "created"
            && e.payload.get("mirror").is_none()
    });
    let deferred = events.iter().find(|e| e.event_type == "SyncDeferred");
    Ok(match (created, deferred) {
        (Some(c), Some(_)) => format!(
            "SyncDeferred, then OrderSynced: subscription {}",
            c.payload["billing_id"].as_str().unwrap_or("?")
        ),
        (Some(c), None) => format!(
            "subscription {}",
            c.payload["billing_id"].as_str().unwrap_or("?")
        ),
        (None, Some(w)) => format!(
            "SyncDeferred: waits for {}",
            w.payload["waiting_for"].as_str().unwrap_or("?")
        ),
        (None, None) => "not synced".to_string(),
    })
}

/// The CRM pricebook price of the product, as the sandbox CRM holds it.
fn crm_price(s: &Sandbox) -> String {
    s.crm_records("PricebookEntry")
        .iter()
        .filter_map(|p| p.get("UnitPrice").and_then(Value::as_f64))
        .map(|p| format!("{p:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The whole log, in the replay order.
async fn everything(log: &dyn EventLog) -> Result<Vec<RecordedEvent>, CliError> {
    let mut all: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = all.last().map(RecordedEvent::global_order_key);
        let page = log.read_all(None, after.as_deref(), 500).await?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

/// Runs every projection over the change feed until idle, repeatedly (outcomes one projection
/// records feed the others on the next round). Returns (deliveries retried, given up).
async fn run_projectors(d: &Demo) -> Result<(usize, usize), CliError> {
    let deps = ProjectorDeps {
        log: d.log.clone(),
        views: d.views.clone(),
        effects: d.effects.clone(),
        settings: RunnerSettings::default(),
    };
    let settings = WorkerSettings {
        batch_size: 100,
        batch_window: Duration::ZERO,
        max_retries: 5,
        retry_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        idle_poll: Duration::from_millis(10),
        stop: StopWhen::Idle,
    };
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let mut totals = (0, 0);
    for _ in 0..10 {
        let mut applied_this_round = 0;
        for projector in build_selected("all", &deps).map_err(invalid)? {
            let report = feed::run(
                d.log.clone(),
                d.views.clone(),
                projector,
                settings,
                shutdown.clone(),
            )
            .await
            .map_err(invalid)?;
            applied_this_round += report.applied;
            totals.0 += report.retried;
            totals.1 += report.gave_up;
        }
        if applied_this_round == 0 {
            break;
        }
    }
    Ok(totals)
}
