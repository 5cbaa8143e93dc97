//! The operator console through `ledger serve`, asserting on the HTML as a parser sees it:
//! search, trace timeline, entity and failures pages over a story built through the real
//! ingest + worker path; the Redrive action fixing a failed sync (with the CSRF token; refused
//! without it); untrusted payloads escaped; the reconciliation page before any run; the bind
//! guard; and `ledger demo --keep` serving the demo's story.

mod common;

use common::bounded_views;

use common::console;
use common::sync_world;

use console::{get, post_form, silver, story, Served};
use scraper::{Html, Selector};
use serde_json::json;
use sync_world::sqlite_world;

fn sel(css: &str) -> Selector {
    Selector::parse(css).unwrap()
}

/// Visible text of every element matching `css`, whitespace collapsed.
fn texts(doc: &Html, css: &str) -> Vec<String> {
    doc.select(&sel(css))
        .map(|e| {
            e.text()
                .collect::<Vec<_>>()
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn attrs(doc: &Html, css: &str, attr: &str) -> Vec<String> {
    doc.select(&sel(css))
        .filter_map(|e| e.value().attr(attr).map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_console_shows_the_story_and_its_redrive_fixes_the_failed_sync() {
    let w = sqlite_world().await;
    let s = story(&w).await;
    let served = Served::world(&w);

    // Search by the waiting order's CRM id: the record, and a link to its trace.
    let (status, body) = get(&served, &format!("/search?q={}", s.waited_order)).await;
    assert_eq!(status, 200, "{body}");
    let doc = Html::parse_document(&body);
    assert!(
        attrs(&doc, "section.result a.entity", "href")
            .contains(&format!("/entity/crm/{}", s.waited_order)),
        "{body}"
    );
    assert!(
        attrs(&doc, "ul.traces a.trace", "href").contains(&format!("/trace/{}", s.waited_trace))
    );
    // A name finds the account; a correlation id goes straight to its trace.
    let (_, body) = get(&served, "/search?q=globex").await;
    assert!(
        texts(&Html::parse_document(&body), "section.result dd")
            .iter()
            .any(|t| t == "Globex Corporation"),
        "{body}"
    );
    let (status, body) = get(&served, &format!("/search?q={}", s.waited_trace)).await;
    assert_eq!(status, 200);
    assert!(body.contains(&format!("Trace <code>{}</code>", s.waited_trace)));
    let (status, body) = get(&served, "/search?q=nothing-has-this-id").await;
    assert_eq!(status, 404);
    assert!(texts(&Html::parse_document(&body), "p.problem")[0].contains("nothing-has-this-id"));

    // The trace of the order that waited: its inbound event, the deferral decision, then the
    // create call that synced it, in that order, with links to what it touched.
    let (status, body) = get(&served, &format!("/trace/{}", s.waited_trace)).await;
    assert_eq!(status, 200, "{body}");
    let doc = Html::parse_document(&body);
    let lane = texts(&doc, "ol.timeline > li.step.inbound > .step-head .type");
    // The order, and Billing's echo of the subscription we created (suppressed).
    assert_eq!(
        lane,
        vec![
            "CrmOrderActivated".to_string(),
            "BillingSubscriptionCreated".to_string()
        ],
        "{body}"
    );
    assert_eq!(
        texts(&doc, "li.step.decision.echo > .step-head .badge"),
        vec!["echo suppressed".to_string()]
    );
    let order: Vec<String> = doc
        .select(&sel("ol.timeline li.step"))
        .filter_map(|e| {
            e.value()
                .attr("data-event-type")
                .or(e.value().attr("data-call"))
                .map(str::to_string)
        })
        .collect();
    let deferred = order
        .iter()
        .position(|t| t == "SyncDeferred")
        .expect("SyncDeferred in the timeline");
    let synced = order
        .iter()
        .position(|t| t == "OrderSynced")
        .expect("OrderSynced in the timeline");
    assert!(deferred < synced, "{order:?}");
    assert_eq!(
        texts(&doc, "li.step.decision.wait > .step-head .badge"),
        vec!["deferred".to_string()]
    );
    let call = texts(&doc, "li.step.call.ok > .step-head");
    assert!(
        call.iter()
            .any(|c| c.starts_with("call billing-create-subscription synced")
                && c.contains("attempts: 1")),
        "{call:?}"
    );
    // Every event's raw envelope is there to expand, times are UTC with a datetime.
    assert_eq!(
        doc.select(&sel("li.step details pre")).count(),
        doc.select(&sel("li.step[data-event-type]")).count()
    );
    assert!(attrs(&doc, "li.step time", "datetime")
        .iter()
        .all(|t| t.ends_with('Z')));
    let entities = attrs(&doc, "ul.entities a", "href");
    assert!(
        entities.contains(&format!("/entity/crm/{}", s.waited_order)),
        "{entities:?}"
    );
    assert!(
        entities.iter().any(|e| e.starts_with("/entity/billing/")),
        "{entities:?}"
    );
    assert!(attrs(&doc, "ul.streams a", "href")
        .contains(&format!("/stream/crm-order-{}", s.waited_order)));
    assert_eq!(
        texts(&doc, "dd .badge.ok"),
        vec!["none".to_string()],
        "nothing unfinished"
    );

    // The entity page: the order, linked to its subscription, the link's history, its traces.
    let (status, body) = get(&served, &format!("/entity/crm/{}", s.waited_order)).await;
    assert_eq!(status, 200, "{body}");
    let doc = Html::parse_document(&body);
    let subscription = w.sandbox.billing_subscriptions()[0]
        .subscription_number
        .clone();
    assert!(
        texts(&doc, "table.links td")
            .iter()
            .any(|t| t.contains(&subscription)),
        "{body}"
    );
    assert!(
        texts(&doc, "table.history td")
            .iter()
            .any(|t| t == "linked"),
        "{body}"
    );
    assert!(attrs(&doc, "ol.traces a", "href").contains(&format!("/trace/{}", s.waited_trace)));
    let (status, _) = get(&served, "/entity/crm/001NotThere").await;
    assert_eq!(status, 404);

    // The failures page lists the failed order (and nothing of the synced story).
    let (status, body) = get(&served, "/failures").await;
    assert_eq!(status, 200, "{body}");
    let doc = Html::parse_document(&body);
    assert_eq!(
        attrs(
            &doc,
            "table.failures tr[data-correlation]",
            "data-correlation"
        ),
        vec![s.failed_trace.clone()],
        "{body}"
    );
    let row = texts(&doc, "table.failures tbody tr").join(" ");
    assert!(
        row.contains("order-sync billing-create-subscription") && row.contains("SKU-SILVER"),
        "{row}"
    );
    // Filtered by projection and time.
    let (_, body) = get(&served, "/failures?projection=account-sync").await;
    assert_eq!(
        Html::parse_document(&body)
            .select(&sel("table.failures tr[data-correlation]"))
            .count(),
        0
    );
    let (_, body) = get(&served, "/failures?projection=order&since=1h").await;
    assert_eq!(
        Html::parse_document(&body)
            .select(&sel("table.failures tr[data-correlation]"))
            .count(),
        1
    );
    let (status, body) = get(&served, "/failures?since=last-tuesday").await;
    assert_eq!(status, 400);
    assert!(body.contains("since: "), "{body}");
    let csrf = attrs(&doc, "form.redrive input[name=csrf]", "value").remove(0);

    // Billing starts selling Silver. A POST without the CSRF token is refused and changes nothing.
    w.sandbox.upsert_product(silver());
    let (status, body) = post_form(
        &served,
        "/failures/redrive",
        &[("only", &s.failed_trace), ("by", "mallory")],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = post_form(
        &served,
        "/failures/redrive",
        &[
            ("csrf", "1.2.3"),
            ("only", &s.failed_trace),
            ("by", "mallory"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        w.sandbox.billing_subscriptions().len() == 1,
        "nothing was called"
    );
    // Who is required, and named when missing.
    let (status, body) = post_form(
        &served,
        "/failures/redrive",
        &[("csrf", &csrf), ("only", &s.failed_trace)],
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("by: is required"), "{body}");

    // The Redrive action with the token: the same re-run `ledger redrive` makes.
    let (status, body) = post_form(
        &served,
        "/failures/redrive",
        &[
            ("csrf", &csrf),
            ("by", "alice"),
            ("reason", "Silver is on sale now"),
            ("only", &s.failed_trace),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let doc = Html::parse_document(&body);
    let report = texts(&doc, "section.redriven pre").join("\n");
    assert!(report.contains("re-run: succeeded"), "{report}");
    assert_eq!(w.sandbox.billing_subscriptions().len(), 2);

    // The trace now shows the redrive (who and why) and the call synced; nothing is unfinished.
    let (_, body) = get(&served, &format!("/trace/{}", s.failed_trace)).await;
    let doc = Html::parse_document(&body);
    let redrive = texts(&doc, "li.step[data-event-type=RedriveRequested] .detail").join(" ");
    assert!(
        redrive.contains("re-run by alice: Silver is on sale now"),
        "{body}"
    );
    let call = texts(&doc, "li.step.call > .step-head").join(" | ");
    assert!(
        call.contains("call billing-create-subscription synced"),
        "{call}"
    );
    assert!(
        doc.select(&sel("li.step[data-event-type=OrderSynced]"))
            .count()
            >= 1
    );
    assert_eq!(texts(&doc, "dd .badge.ok"), vec!["none".to_string()]);
    let (_, body) = get(&served, "/failures").await;
    assert_eq!(
        Html::parse_document(&body)
            .select(&sel("table.failures tr[data-correlation]"))
            .count(),
        0,
        "{body}"
    );

    // No reconciliation has run: the page says so.
    let (status, body) = get(&served, "/reconcile").await;
    assert_eq!(status, 200);
    assert_eq!(
        Html::parse_document(&body)
            .select(&sel("p.no-runs"))
            .count(),
        1,
        "{body}"
    );
}

#[tokio::test]
async fn untrusted_payloads_are_shown_as_text_never_as_markup() {
    let w = sqlite_world().await;
    let correlation = "0193a0b4-1c00-7000-8000-00000000bad1";
    w.ingest(&[json!({
        "stream_id": "crm-account-001XSS0000000001",
        "event_type": "CrmAccountUpserted",
        "source": "crm",
        "source_event_id": "AccountChangeEvent:xss-1",
        "correlation_id": correlation,
        "occurred_at": "2026-11-26T12:00:00Z",
        "payload": {"account_id": "001XSS0000000001", "name": "<script>alert('owned')</script><img src=x onerror=alert(1)>"}
    })])
    .await;
    let served = Served::world(&w);
    let (status, body) = get(&served, &format!("/trace/{correlation}")).await;
    assert_eq!(status, 200, "{body}");
    let doc = Html::parse_document(&body);
    // The only script is the console's own; the payload's tags are text in the envelope.
    assert_eq!(
        attrs(&doc, "script", "src"),
        vec!["/console.js".to_string()]
    );
    assert_eq!(doc.select(&sel("script")).count(), 1);
    assert_eq!(doc.select(&sel("img")).count(), 0);
    assert!(
        texts(&doc, "details pre")
            .join(" ")
            .contains("<script>alert('owned')</script>"),
        "{body}"
    );
    assert!(
        texts(&doc, ".detail").join(" ").contains("name=<script>"),
        "{body}"
    );
    // Nor through the search box.
    let (_, body) = get(&served, "/search?q=%3Cscript%3Ealert(2)%3C%2Fscript%3E").await;
    let doc = Html::parse_document(&body);
    assert_eq!(doc.select(&sel("script")).count(), 1, "{body}");
}

#[test]
fn a_console_bound_beyond_loopback_needs_the_token_variable() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args([
            "--store", &store, "serve", "--bind", "0.0.0.0", "--port", "0",
        ])
        .env_remove("LEDGER_CONSOLE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LEDGER_CONSOLE_TOKEN is not set"), "{err}");
}

#[tokio::test]
async fn with_a_token_every_page_and_the_api_require_it() {
    let w = sqlite_world().await;
    let token = "console-token-0123456789";
    let served = Served::start_with_token(&w.store().url, &w.store().env, token);
    for path in ["/", "/failures", "/audit/001Dn00000ABC"] {
        let r = reqwest::get(served.url(path)).await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let client = reqwest::Client::new();
    let ok = client
        .get(served.url("/failures"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let wrong = client
        .get(served.url("/failures"))
        .bearer_auth("console-token-0123456780")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // The login form sets the cookie a browser then sends.
    let login = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(served.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = client
        .get(served.url("/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
}

#[tokio::test]
async fn demo_keep_leaves_a_store_that_serve_opens_on_the_demo_story() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["demo", "--keep", keep.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("kept the store: ledger serve --store sqlite://"),
        "{stdout}"
    );
    let served = Served::start(
        &format!("sqlite://{}", keep.join("ledger.db").display()),
        &[],
        &[],
    );
    // Globex's account, found by name; its trace holds the account's sync.
    let (status, body) = get(&served, "/search?q=Globex").await;
    assert_eq!(status, 200, "{body}");
    let doc = Html::parse_document(&body);
    let trace = attrs(&doc, "ul.traces a.trace", "href").remove(0);
    let (status, body) = get(&served, &trace).await;
    assert_eq!(status, 200);
    assert!(
        Html::parse_document(&body)
            .select(&sel("li.step[data-event-type=AccountSynced]"))
            .count()
            >= 1,
        "{body}"
    );
    // The demo's story has no failure; redrive is unconfigured here and the page says why.
    let (_, body) = get(&served, "/failures").await;
    assert!(body.contains("Redrive is unavailable"), "{body}");
    // A second --keep into the same directory refuses to mix stories.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["demo", "--keep", keep.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds ledger.db"));
}

/// An entity relinked hundreds of times (issue 15 item 1): its item keeps the latest changes
/// and spills older ones into pages; the entity page still lists every trace, in order, and
/// says where the earlier link changes are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_page_lists_every_trace_through_the_spilled_pages() {
    let w = sqlite_world().await;
    let id = "001Dn00000PAGED";
    let recorded =
        bounded_views::project_relinks(w.store().log.clone(), w.store().views.clone(), id, 300)
            .await;
    let served = Served::world(&w);
    let (status, body) = get(&served, &format!("/entity/crm/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let doc = Html::parse_document(&body);
    let expected: Vec<String> = recorded
        .iter()
        .map(|e| format!("/trace/{}", e.correlation_id))
        .collect();
    assert_eq!(attrs(&doc, "ol.traces a", "href"), expected);
    // 300 changes: 9 full pages of 32 spilled, the latest 12 in the item.
    assert_eq!(texts(&doc, "table.history tbody tr").len(), 12, "{body}");
    assert!(
        texts(&doc, "p.earlier")
            .iter()
            .any(|t| t.contains("Latest 12 changes; 288 earlier")),
        "{body}"
    );
}
