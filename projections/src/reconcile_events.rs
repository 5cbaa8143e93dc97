//! Payloads of the reconciliation events: a run (`ReconciliationStarted`, one
//! `DriftDetected` per difference, `ReconciliationCompleted`, all on
//! `system-reconcile-<run id>` with the run's correlation id) and the observed-state events a
//! repair appends on an account's own stream (`CrmAccountObserved`, `BillingAccountObserved`),
//! which account sync handles like the inbound change of that side. Schema version 1.

use crate::catalogue::Extra;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stream of one run's events.
pub fn run_stream(run_id: &str) -> String {
    format!("system-reconcile-{run_id}")
}

/// The state of an account as the reconciler read it from one side, appended so the
/// projectors act on it (source `system`). `linked_id` is the other side's id the repair
/// links to (`None`: create or adopt by external id); `forget_link` drops a link whose
/// counterpart no longer exists, so the sync recreates it instead of writing to nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountObserved {
    pub account_id: String,
    pub name: String,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub linked_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forget_link: bool,
    /// The pair already agrees and names each other: take the link, call nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// The run that observed it, the drift kind it repairs and the record's modstamp (the
    /// three make the event's dedupe key).
    pub run_id: String,
    pub drift: String,
    pub modstamp: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconciliationStarted {
    pub run_id: String,
    /// `account` (the entities compared).
    pub entities: Vec<String>,
    pub dry_run: bool,
    pub repair: bool,
    /// `newer`, `crm` or `billing`.
    pub prefer: String,
    #[serde(default)]
    pub max_api_calls: Option<u64>,
    /// Set when this run continues a stopped one from its checkpoint.
    #[serde(default)]
    pub resumed: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One side's values of a drifted record (`None` fields: the record is absent there).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideValues {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    /// The other side's id this record names (`Billing_Account_Id__c` / `CrmId`).
    #[serde(default)]
    pub names: Option<String>,
    /// `SystemModstamp` / `UpdatedDate`.
    #[serde(default)]
    pub modstamp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftDetected {
    pub run_id: String,
    pub entity: String,
    /// `missing_in_billing`, `missing_in_crm`, `unlinked`, `broken_link`, `field_drift`.
    pub kind: String,
    #[serde(default)]
    pub crm_id: Option<String>,
    #[serde(default)]
    pub billing_id: Option<String>,
    /// Boxed: two sides' values would make this the catalogue's one outsized variant.
    pub crm: Box<SideValues>,
    pub billing: Box<SideValues>,
    /// The link the correlation view holds, if any.
    #[serde(default)]
    pub view_link: Option<String>,
    /// For field drift: the fields that differ and the side that changed last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    #[serde(default)]
    pub newer: Option<String>,
    /// The side whose values a repair writes to the other (`None`: reported only).
    #[serde(default)]
    pub repair_from: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconciliationCompleted {
    pub run_id: String,
    /// Records read per system (`crm`, `billing`).
    pub scanned: BTreeMap<String, u64>,
    /// Differences per kind.
    pub drift: BTreeMap<String, u64>,
    /// Observed-state events appended for the projectors.
    pub repaired: u64,
    /// Read calls made per system.
    pub api_calls: BTreeMap<String, u64>,
    pub duration_ms: u64,
    /// `completed`, or `budget_exhausted` (resume with the same command).
    pub status: String,
    #[serde(flatten)]
    pub extra: Extra,
}
