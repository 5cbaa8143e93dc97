//! The views conformance suite: one body per behaviour of the `ViewStore` port, run against
//! every adapter (`tests/views_sqlite.rs`, `tests/views_dynamodb.rs`) through
//! `views_conformance_tests!`, so the adapters cannot drift apart.

use serde_json::json;
use std::sync::Arc;
use sync_ledger::projections::StreamId;
use sync_ledger::views::{
    page_writes, ExpectedRevision, LastVersions, ViewError, ViewKey, ViewNamespace, ViewStore,
    ViewWrite,
};

pub type Store = Arc<dyn ViewStore>;

/// Generates one `#[tokio::test]` per conformance body; `$make` is an async expression
/// yielding a fresh, empty `(guard, Store)` (the guard keeps temp files / servers alive).
#[macro_export]
macro_rules! views_conformance_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_guard, store) = $make.await;
                $crate::common::views_conformance::$name(store).await;
            }
        )*
    };
}

/// Every body below, for the macro.
#[macro_export]
macro_rules! all_views_conformance_tests {
    ($make:expr) => {
        $crate::views_conformance_tests!($make;
            missing_item_reads_as_none,
            created_item_round_trips_state_and_last_versions,
            creating_an_existing_item_conflicts_and_keeps_it,
            stale_revision_conflicts_and_keeps_the_newer_item,
            commit_is_all_or_nothing,
            racing_writers_on_one_revision_exactly_one_wins,
            list_returns_one_projection_in_key_order,
            delete_projection_wipes_only_that_projection,
            checkpoints_round_trip_and_move_forward,
            namespaces_are_isolated_from_the_live_views,
            oversized_or_duplicate_commits_are_rejected_before_writing,
            a_state_over_the_item_limit_is_refused_naming_the_item,
            bad_names_are_rejected_naming_the_field,
            list_page_walks_one_projection_in_bounded_pages,
            commit_batch_writes_past_one_commit_and_keeps_the_revision_condition,
            delete_items_deletes_only_the_named_items,
            get_many_answers_each_key_in_order_across_read_chunks,
            spilled_pages_commit_with_their_item_and_are_write_once,
        );
    };
}

fn key(projection: &str, k: &str) -> ViewKey {
    ViewKey::new(projection, k).unwrap()
}

fn versions(pairs: &[(&str, u64)]) -> LastVersions {
    pairs
        .iter()
        .map(|(s, v)| (StreamId::parse(*s).unwrap(), *v))
        .collect()
}

fn create(k: ViewKey, lv: LastVersions, state: serde_json::Value) -> ViewWrite {
    ViewWrite {
        key: k,
        expected: ExpectedRevision::Absent,
        last_version: lv,
        state,
    }
}

pub async fn missing_item_reads_as_none(store: Store) {
    assert_eq!(store.get(&key("account", "nope")).await.unwrap(), None);
    assert_eq!(store.list("account").await.unwrap(), vec![]);
    assert_eq!(store.checkpoint("worker#x").await.unwrap(), None);
}

pub async fn created_item_round_trips_state_and_last_versions(store: Store) {
    let k = key("correlation", "link#crm#001Dn00000ABC");
    let lv = versions(&[
        ("crm-account-001Dn00000ABC", 3),
        ("billing-account-8a1b", 1),
    ]);
    // Floats, nulls, nesting and unicode must come back exactly as written.
    let state = json!({"billing_id": "8a1b", "price": 1.0, "qty": 2.5, "gone": null,
                       "history": [{"at": "2026-11-26T10:00:00Z", "by": "Zoë"}]});
    let revs = store
        .commit(vec![create(k.clone(), lv.clone(), state.clone())])
        .await
        .unwrap();
    assert_eq!(revs, vec![1]);
    let item = store.get(&k).await.unwrap().expect("item was written");
    assert_eq!(item.key, k);
    assert_eq!(item.revision, 1);
    assert_eq!(item.state, state);
    assert_eq!(item.last_version, lv);
    assert_eq!(
        item.applied(&StreamId::parse("crm-account-001Dn00000ABC").unwrap()),
        3
    );
    assert_eq!(
        item.applied(&StreamId::parse("crm-account-other").unwrap()),
        0
    );

    let next = ViewWrite::replacing(
        k.clone(),
        Some(&item),
        versions(&[("crm-account-001Dn00000ABC", 4)]),
        json!({"v": 2}),
    );
    assert_eq!(store.commit(vec![next]).await.unwrap(), vec![2]);
    let item = store.get(&k).await.unwrap().unwrap();
    assert_eq!(item.revision, 2);
    assert_eq!(item.state, json!({"v": 2}));
    assert_eq!(
        item.last_version,
        versions(&[("crm-account-001Dn00000ABC", 4)])
    );
}

pub async fn creating_an_existing_item_conflicts_and_keeps_it(store: Store) {
    let k = key("account", "001");
    store
        .commit(vec![create(
            k.clone(),
            versions(&[]),
            json!({"first": true}),
        )])
        .await
        .unwrap();
    let err = store
        .commit(vec![create(
            k.clone(),
            versions(&[]),
            json!({"second": true}),
        )])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ViewError::Conflict { pk, expected: ExpectedRevision::Absent } if pk == "account#001"),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(
        store.get(&k).await.unwrap().unwrap().state,
        json!({"first": true})
    );
}

pub async fn stale_revision_conflicts_and_keeps_the_newer_item(store: Store) {
    let k = key("account", "001");
    store
        .commit(vec![create(
            k.clone(),
            versions(&[("crm-account-001", 1)]),
            json!(1),
        )])
        .await
        .unwrap();
    let read_by_a = store.get(&k).await.unwrap().unwrap();
    let read_by_b = read_by_a.clone();
    store
        .commit(vec![ViewWrite::replacing(
            k.clone(),
            Some(&read_by_a),
            versions(&[("crm-account-001", 2)]),
            json!(2),
        )])
        .await
        .unwrap();
    let err = store
        .commit(vec![ViewWrite::replacing(
            k.clone(),
            Some(&read_by_b),
            versions(&[("crm-account-001", 2)]),
            json!("stale"),
        )])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ViewError::Conflict {
                expected: ExpectedRevision::Exact(1),
                ..
            }
        ),
        "{err:?}"
    );
    let item = store.get(&k).await.unwrap().unwrap();
    assert_eq!((item.revision, item.state), (2, json!(2)));
}

pub async fn commit_is_all_or_nothing(store: Store) {
    let existing = key("correlation", "link#billing#B1");
    store
        .commit(vec![create(existing.clone(), versions(&[]), json!("old"))])
        .await
        .unwrap();
    let fresh = key("correlation", "link#crm#C1");
    // The second write expects an absent item that exists: the first must not land either.
    let err = store
        .commit(vec![
            create(fresh.clone(), versions(&[]), json!("new")),
            create(existing.clone(), versions(&[]), json!("clobber")),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ViewError::Conflict { pk, .. } if pk == "correlation#link#billing#B1"),
        "{err:?}"
    );
    assert_eq!(store.get(&fresh).await.unwrap(), None);
    assert_eq!(
        store.get(&existing).await.unwrap().unwrap().state,
        json!("old")
    );

    let both = store
        .commit(vec![
            create(fresh.clone(), versions(&[]), json!("new")),
            ViewWrite::replacing(
                existing.clone(),
                store.get(&existing).await.unwrap().as_ref(),
                versions(&[]),
                json!("updated"),
            ),
        ])
        .await
        .unwrap();
    assert_eq!(both, vec![1, 2]);
}

pub async fn racing_writers_on_one_revision_exactly_one_wins(store: Store) {
    let k = key("order", "801");
    store
        .commit(vec![create(k.clone(), versions(&[]), json!(0))])
        .await
        .unwrap();
    let current = store.get(&k).await.unwrap().unwrap();
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let store = store.clone();
        let write = ViewWrite::replacing(k.clone(), Some(&current), versions(&[]), json!(writer));
        tasks.push(tokio::spawn(async move { store.commit(vec![write]).await }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(revs) => {
                assert_eq!(revs, vec![2]);
                wins += 1;
            }
            Err(ViewError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.get(&k).await.unwrap().unwrap().revision, 2);
}

pub async fn list_returns_one_projection_in_key_order(store: Store) {
    for (p, k) in [
        ("account", "c"),
        ("account", "a"),
        ("account", "b#x"),
        // A projection whose name extends another's must not leak into its listing.
        ("accounts", "a"),
        ("order", "a"),
    ] {
        store
            .commit(vec![create(
                key(p, k),
                versions(&[]),
                json!(format!("{p}/{k}")),
            )])
            .await
            .unwrap();
    }
    store.save_checkpoint("account", "42").await.unwrap();
    let listed: Vec<String> = store
        .list("account")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key.pk())
        .collect();
    assert_eq!(listed, vec!["account#a", "account#b#x", "account#c"]);
}

pub async fn delete_projection_wipes_only_that_projection(store: Store) {
    // More than one DynamoDB batch (25) so the wipe has to page its deletes.
    let writes: Vec<ViewWrite> = (0..30)
        .map(|i| create(key("product", &format!("p{i:02}")), versions(&[]), json!(i)))
        .collect();
    store.commit(writes).await.unwrap();
    store
        .commit(vec![create(
            key("account", "keep"),
            versions(&[]),
            json!(1),
        )])
        .await
        .unwrap();
    store.save_checkpoint("product", "7").await.unwrap();

    assert_eq!(store.delete_projection("product").await.unwrap(), 30);
    assert_eq!(store.list("product").await.unwrap(), vec![]);
    assert_eq!(store.list("account").await.unwrap().len(), 1);
    assert_eq!(
        store.checkpoint("product").await.unwrap().unwrap().position,
        "7"
    );
    assert_eq!(store.delete_projection("product").await.unwrap(), 0);
    // A wiped projection can be rebuilt from scratch.
    store
        .commit(vec![create(
            key("product", "p00"),
            versions(&[]),
            json!("again"),
        )])
        .await
        .unwrap();
}

pub async fn checkpoints_round_trip_and_move_forward(store: Store) {
    let name = "worker#account#shardId-00000001700000000000-abcdef01";
    store
        .save_checkpoint(name, "000000000000000000001")
        .await
        .unwrap();
    let first = store.checkpoint(name).await.unwrap().unwrap();
    assert_eq!(first.name, name);
    assert_eq!(first.position, "000000000000000000001");
    store
        .save_checkpoint(name, "000000000000000000009")
        .await
        .unwrap();
    let second = store.checkpoint(name).await.unwrap().unwrap();
    assert_eq!(second.position, "000000000000000000009");
    assert!(second.updated_at >= first.updated_at);
    assert_eq!(store.checkpoint("worker#order#other").await.unwrap(), None);
}

pub async fn namespaces_are_isolated_from_the_live_views(store: Store) {
    assert_eq!(store.namespace(), &ViewNamespace::live());
    let replay = store.in_namespace(ViewNamespace::named("replay-7").unwrap());
    assert_eq!(replay.namespace().name(), Some("replay-7"));
    let k = key("account", "001");
    store
        .commit(vec![create(k.clone(), versions(&[]), json!("live"))])
        .await
        .unwrap();
    // The same key in another namespace is a different item: creating it does not conflict.
    replay
        .commit(vec![create(k.clone(), versions(&[]), json!("replayed"))])
        .await
        .unwrap();
    replay.save_checkpoint("replay", "r-5").await.unwrap();

    assert_eq!(store.get(&k).await.unwrap().unwrap().state, json!("live"));
    assert_eq!(
        replay.get(&k).await.unwrap().unwrap().state,
        json!("replayed")
    );
    assert_eq!(replay.list("account").await.unwrap().len(), 1);
    assert_eq!(replay.list("account").await.unwrap()[0].key, k);
    assert_eq!(store.list("account").await.unwrap().len(), 1);
    assert_eq!(store.checkpoint("replay").await.unwrap(), None);

    assert_eq!(replay.delete_projection("account").await.unwrap(), 1);
    assert_eq!(store.get(&k).await.unwrap().unwrap().state, json!("live"));
    assert_eq!(replay.get(&k).await.unwrap(), None);
}

pub async fn oversized_or_duplicate_commits_are_rejected_before_writing(store: Store) {
    let writes: Vec<ViewWrite> = (0..101)
        .map(|i| create(key("product", &format!("p{i}")), versions(&[]), json!(i)))
        .collect();
    let err = store.commit(writes).await.unwrap_err();
    assert!(
        matches!(
            err,
            ViewError::TooManyWrites {
                count: 101,
                max: 100
            }
        ),
        "{err:?}"
    );
    let err = store
        .commit(vec![
            create(key("product", "p1"), versions(&[]), json!(1)),
            create(key("product", "p1"), versions(&[]), json!(2)),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, ViewError::DuplicateWrite { .. }), "{err:?}");
    assert_eq!(store.list("product").await.unwrap(), vec![]);
}

pub async fn a_state_over_the_item_limit_is_refused_naming_the_item(store: Store) {
    let big = "x".repeat(sync_ledger::views::MAX_ITEM_BYTES);
    let err = store
        .commit(vec![
            create(key("order", "small"), versions(&[]), json!({"n": 1})),
            create(
                key("order", "crm-account#big"),
                versions(&[]),
                json!({"orders": big}),
            ),
        ])
        .await
        .unwrap_err();
    match &err {
        ViewError::TooLarge { pk, bytes, max } => {
            assert_eq!(pk, "order#crm-account#big");
            assert!(bytes > max, "{err}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(!err.is_transient(), "retrying cannot make it fit");
    assert!(err.to_string().contains("order#crm-account#big"), "{err}");
    // All or nothing: the small write of the same commit is not kept either.
    assert_eq!(store.list("order").await.unwrap(), vec![]);
    // Just under the limit still fits.
    let fits = "x".repeat(sync_ledger::views::MAX_ITEM_BYTES - 1024);
    store
        .commit(vec![create(
            key("order", "fits"),
            versions(&[]),
            json!(fits),
        )])
        .await
        .unwrap();
}

pub async fn bad_names_are_rejected_naming_the_field(store: Store) {
    let err = store.list("check#point").await.unwrap_err();
    assert!(err.to_string().starts_with("projection:"), "{err}");
    let err = store.delete_projection("").await.unwrap_err();
    assert!(err.to_string().starts_with("projection:"), "{err}");
    let err = store.save_checkpoint("", "1").await.unwrap_err();
    assert!(err.to_string().starts_with("checkpoint:"), "{err}");
}

pub async fn list_page_walks_one_projection_in_bounded_pages(store: Store) {
    let writes: Vec<ViewWrite> = (0..23)
        .map(|i| create(key("product", &format!("p{i:02}")), versions(&[]), json!(i)))
        .collect();
    store.commit(writes).await.unwrap();
    for (p, k) in [("products", "a"), ("account", "a")] {
        store
            .commit(vec![create(key(p, k), versions(&[]), json!(0))])
            .await
            .unwrap();
    }
    store.save_checkpoint("product", "9").await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = store.list_page("product", after.take(), 5).await.unwrap();
        assert!(
            page.items.len() <= 5,
            "{} items in a page of 5",
            page.items.len()
        );
        seen.extend(page.items.into_iter().map(|i| (i.key.pk(), i.state)));
        pages += 1;
        assert!(pages < 50, "paging does not end");
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(pages >= 5, "23 items in pages of 5 took {pages} pages");
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let expected: Vec<(String, serde_json::Value)> = (0..23)
        .map(|i| (format!("product#p{i:02}"), json!(i)))
        .collect();
    assert_eq!(seen, expected, "every item once, no other projection's");
    let none = store.list_page("nothing", None, 5).await.unwrap();
    assert!(none.items.is_empty());
}

pub async fn commit_batch_writes_past_one_commit_and_keeps_the_revision_condition(store: Store) {
    // More than two commits' worth, as a replay's flush of several projections is, in groups
    // of one to three items (an item and the pages it spilled go together).
    let mut groups: Vec<Vec<ViewWrite>> = Vec::new();
    for i in 0..230 {
        let write = create(
            key("order", &format!("o{i:03}")),
            versions(&[("crm-order-1", 1)]),
            json!(i),
        );
        match groups.last_mut() {
            Some(group) if group.len() < 1 + i % 3 => group.push(write),
            _ => groups.push(vec![write]),
        }
    }
    store.commit_batch(groups).await.unwrap();
    assert_eq!(store.list("order").await.unwrap().len(), 230);

    let update = |i: usize, expected: ExpectedRevision| ViewWrite {
        key: key("order", &format!("o{i:03}")),
        expected,
        last_version: versions(&[("crm-order-1", 2)]),
        state: json!({"again": i}),
    };
    store
        .commit_batch(
            (0..230)
                .map(|i| vec![update(i, ExpectedRevision::Exact(1))])
                .collect(),
        )
        .await
        .unwrap();
    let item = store.get(&key("order", "o117")).await.unwrap().unwrap();
    assert_eq!((item.revision, item.state), (2, json!({"again": 117})));

    // A stale revision is a conflict naming the item, and its group is not written.
    let err = store
        .commit_batch(vec![vec![
            update(4, ExpectedRevision::Exact(2)),
            update(5, ExpectedRevision::Exact(1)),
        ]])
        .await
        .unwrap_err();
    match err {
        ViewError::Conflict { pk, .. } => assert_eq!(pk, "order#o005"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        store
            .get(&key("order", "o004"))
            .await
            .unwrap()
            .unwrap()
            .revision,
        2
    );
    // The same item twice, or a group over one commit, is refused before anything is written.
    let err = store
        .commit_batch(vec![
            vec![update(7, ExpectedRevision::Exact(2))],
            vec![update(7, ExpectedRevision::Exact(2))],
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, ViewError::DuplicateWrite { .. }), "{err:?}");
    let err = store
        .commit_batch(vec![(0..101)
            .map(|i| update(i, ExpectedRevision::Exact(2)))
            .collect()])
        .await
        .unwrap_err();
    assert!(matches!(err, ViewError::TooManyWrites { .. }), "{err:?}");
    assert_eq!(
        store
            .get(&key("order", "o007"))
            .await
            .unwrap()
            .unwrap()
            .revision,
        2
    );
    store.commit_batch(Vec::new()).await.unwrap();
}

pub async fn delete_items_deletes_only_the_named_items(store: Store) {
    let writes: Vec<ViewWrite> = (0..30)
        .map(|i| create(key("product", &format!("p{i:02}")), versions(&[]), json!(i)))
        .collect();
    store.commit(writes).await.unwrap();
    // Past one DynamoDB batch (25), plus a key that has no item.
    let doomed: Vec<ViewKey> = (0..27)
        .map(|i| key("product", &format!("p{i:02}")))
        .chain([key("product", "never-written")])
        .collect();
    store.delete_items(&doomed).await.unwrap();
    let left: Vec<String> = store
        .list("product")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key.pk())
        .collect();
    assert_eq!(left, vec!["product#p27", "product#p28", "product#p29"]);
    store.delete_items(&[]).await.unwrap();
}

/// A batch read answers every key in the order asked, misses as `None`, a repeated key twice,
/// only from its own namespace, and past one BatchGetItem's 100 keys.
pub async fn get_many_answers_each_key_in_order_across_read_chunks(store: Store) {
    assert_eq!(store.get_many(&[]).await.unwrap(), vec![]);
    let keys: Vec<ViewKey> = (0..130)
        .map(|i| key("account", &format!("crm#{i:03}")))
        .collect();
    for chunk in keys.chunks(100) {
        let writes = chunk
            .iter()
            .map(|k| {
                create(
                    k.clone(),
                    versions(&[("crm-account-1", 1)]),
                    json!({ "name": k.key() }),
                )
            })
            .collect();
        store.commit(writes).await.unwrap();
    }
    // Newest first, a miss in the middle, a key asked twice, 132 keys in all.
    let mut asked: Vec<ViewKey> = keys.iter().rev().cloned().collect();
    asked.insert(60, key("account", "crm#missing"));
    asked.push(keys[5].clone());
    let rows = store.get_many(&asked).await.unwrap();
    assert_eq!(rows.len(), asked.len());
    for (k, row) in asked.iter().zip(&rows) {
        if k.key() == "crm#missing" {
            assert_eq!(row, &None);
            continue;
        }
        let row = row.as_ref().unwrap_or_else(|| panic!("{k} was written"));
        assert_eq!(&row.key, k);
        assert_eq!(row.state, json!({ "name": k.key() }));
        assert_eq!(row.revision, 1);
    }
    assert_eq!(rows.last().unwrap(), &store.get(&keys[5]).await.unwrap());

    let other = store.in_namespace(ViewNamespace::named("rebuild").unwrap());
    let from_other = other.get_many(&keys[..3]).await.unwrap();
    assert_eq!(
        from_other,
        vec![None, None, None],
        "namespaces are isolated"
    );
}

/// An item and the pages it spilled go in one commit: a stale item writes none of its pages,
/// and a page, once stored, is never overwritten (a second spill of it conflicts).
pub async fn spilled_pages_commit_with_their_item_and_are_write_once(store: Store) {
    use sync_ledger::projections::projection::Page;
    let item = key("correlation", "link#crm#001A");
    let page = |n: u64, entries: serde_json::Value| Page {
        key: format!("link#crm#001A#history#{n}"),
        state: json!({"page_of": "link#crm#001A", "history": entries}),
    };
    let head = |expected| ViewWrite {
        key: item.clone(),
        expected,
        last_version: versions(&[("crm-account-001A", 32)]),
        state: json!({"history_pages": 1}),
    };
    let mut writes = vec![head(ExpectedRevision::Absent)];
    writes.extend(page_writes("correlation", vec![page(0, json!([1, 2]))]).unwrap());
    assert_eq!(store.commit(writes).await.unwrap(), vec![1, 1]);
    let stored = store
        .get(&key("correlation", "link#crm#001A#history#0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state["history"], json!([1, 2]));
    assert!(
        stored.last_version.is_empty(),
        "pages carry no ordering guard"
    );

    // A writer that read the item before: its page 1 must not land without its item.
    let mut stale = vec![head(ExpectedRevision::Absent)];
    stale.extend(page_writes("correlation", vec![page(1, json!([3]))]).unwrap());
    assert!(matches!(
        store.commit(stale).await,
        Err(ViewError::Conflict { .. })
    ));
    assert!(store
        .get(&key("correlation", "link#crm#001A#history#1"))
        .await
        .unwrap()
        .is_none());

    // Page 0 again, with other contents: refused, the stored page and item unchanged.
    let mut again = vec![head(ExpectedRevision::Exact(1))];
    again.extend(page_writes("correlation", vec![page(0, json!([9]))]).unwrap());
    assert!(matches!(
        store.commit(again).await,
        Err(ViewError::Conflict { .. })
    ));
    let page0 = store
        .get(&key("correlation", "link#crm#001A#history#0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page0.state["history"], json!([1, 2]));
    assert_eq!(store.get(&item).await.unwrap().unwrap().revision, 1);
}
