//! A `sync_world::World` on DynamoDB (moto): a fresh table prefix, migrated, with the moto
//! endpoint in every `ledger` run's environment. Use from a test binary: `mod common;` then
//! `use common::{sync_world, sync_world_dynamodb};`.
#![allow(dead_code)]

use super::moto::{moto, unique_name};
use super::sync_world::{counterpart, Store, World};
use std::collections::BTreeMap;
use std::sync::Arc;
use sync_ledger::ledger::dynamodb::{migrate_with, views_table, DynamoDbLedger};
use sync_ledger::views::dynamodb::DynamoViewStore;

/// A sync world on DynamoDB (moto): the events and views tables of a fresh prefix.
pub async fn dynamodb_world() -> World {
    let prefix = unique_name("world");
    World::new(|_dir, mut env| async move {
        let config = moto().sdk_config().await;
        migrate_with(&config, &prefix).await.unwrap();
        env.extend(moto().env().into_iter().map(|(k, v)| (k.to_string(), v)));
        Store {
            url: format!("dynamodb://{prefix}"),
            env,
            log: Arc::new(DynamoDbLedger::open_with(&config, &prefix).await.unwrap()),
            views: Arc::new(DynamoViewStore::new(
                aws_sdk_dynamodb::Client::new(&config),
                views_table(&prefix),
            )),
            guard: Box::new(()),
        }
    })
    .await
}

/// The table prefix of a world made by [`dynamodb_world`].
pub fn table_prefix(w: &World) -> &str {
    w.store()
        .url
        .strip_prefix("dynamodb://")
        .expect("a DynamoDB world")
}

/// CRM id -> (Billing account name, linked both ways in the correlation view), like
/// `fault_world::World::billing_state`. Panics if a CRM account has two Billing accounts.
pub async fn billing_state(w: &World) -> BTreeMap<String, (String, bool)> {
    let mut state = BTreeMap::new();
    for account in w.sandbox.billing_accounts() {
        let crm_id = account
            .crm_id
            .clone()
            .expect("synced accounts name their CRM id");
        let crm_link = w.link("crm", &crm_id).await;
        let billing_link = w.link("billing", &account.id).await;
        let linked = crm_link.as_ref().and_then(counterpart) == Some(account.id.as_str())
            && billing_link.as_ref().and_then(counterpart) == Some(crm_id.as_str());
        let previous = state.insert(crm_id.clone(), (account.name.clone(), linked));
        assert!(previous.is_none(), "two Billing accounts for CRM {crm_id}");
    }
    state
}
