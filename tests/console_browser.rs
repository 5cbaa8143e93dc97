//! The console in a real browser: headless Chromium driven over the DevTools protocol opens
//! the search, types a CRM id, follows the trace link, reads the timeline's visible text,
//! checks the page fits a phone's width, and saves screenshots under `target/` (1280 px and
//! 390 px wide) for a person to look at.

mod common;

use common::cdp;
use common::console;
use common::sync_world;

use cdp::Browser;
use console::{story, Served};
use serde_json::json;
use sync_world::sqlite_world;

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_finds_the_order_that_waited_and_reads_its_timeline() {
    let w = sqlite_world().await;
    let s = story(&w).await;
    let served = Served::world(&w);
    let base = served.base.clone();
    let order = s.waited_order.clone();
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(1280, 900);
        b.goto(&format!("{base}/"));
        // Keyboard first: the skip link is the first stop.
        b.press("Tab");
        assert_eq!(
            b.eval("document.activeElement.textContent"),
            json!("Skip to content")
        );
        b.eval("document.querySelector('#q').focus()");
        b.type_text(&order);
        b.press("Enter");
        b.wait_for("location.pathname === '/search' && document.readyState === 'complete'");
        let results = b.eval("document.querySelector('main').innerText");
        assert!(results.as_str().unwrap().contains(&order), "{results}");
        b.click("ul.traces a.trace");
        b.wait_for("location.pathname.startsWith('/trace/') && document.readyState === 'complete'");
        let timeline = b.eval("document.querySelector('ol.timeline').innerText");
        let text = timeline.as_str().unwrap();
        for needle in [
            "CrmOrderActivated",
            "SyncDeferred",
            "deferred",
            "billing-create-subscription",
            "OrderSynced",
            "synced",
            "attempts: 1",
        ] {
            assert!(text.contains(needle), "{needle} not visible in:\n{text}");
        }
        assert!(
            text.find("SyncDeferred") < text.find("OrderSynced"),
            "{text}"
        );
        // Raw envelopes stay folded until asked for.
        assert!(!text.contains("\"source_event_id\""), "{text}");
        // The script put the local time in each time's title.
        assert_eq!(
            b.eval("document.querySelector('time').title.endsWith('(local)')"),
            json!(true)
        );
        b.screenshot(&shots.join("console-trace-1280.png"));

        b.viewport(390, 844);
        b.eval("location.reload()");
        b.wait_for("document.readyState === 'complete' && !!document.querySelector('ol.timeline')");
        assert_eq!(
            b.eval("document.documentElement.scrollWidth <= window.innerWidth"),
            json!(true),
            "the trace page scrolls sideways at phone width"
        );
        b.screenshot(&shots.join("console-trace-phone.png"));
        b.goto(&format!("{base}/failures"));
        b.screenshot(&shots.join("console-failures-phone.png"));
        b.viewport(1280, 900);
        b.eval("location.reload()");
        b.wait_for(
            "document.readyState === 'complete' && !!document.querySelector('table.failures')",
        );
        b.screenshot(&shots.join("console-failures-1280.png"));
    })
    .await
    .unwrap();
}
