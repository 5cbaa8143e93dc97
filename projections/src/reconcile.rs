//! Drift classification of accounts between CRM, Billing and the correlation view: pure, so
//! the same rules hold whatever reads the pages (`service::reconcile`).
//!
//! One side is streamed into a compact keyed index (`BillingIndex`: per Billing account its
//! name, currency, `CrmId` and `UpdatedDate`, about 250 bytes a record with the map
//! overhead), then every CRM page is compared against it record by record, each with the
//! link the view holds; what no CRM record claimed is classified last. Nothing holds the CRM
//! side or a second copy of either.
//!
//! Kinds: `missing_in_billing` (a CRM account with no counterpart), `missing_in_crm` (the
//! reverse), `unlinked` (records that name each other — `Billing_Account_Id__c` / `CrmId` —
//! with no link in the view), `broken_link` (a link, in the view or on the record, to a
//! record that no longer exists), `field_drift` (a linked pair whose mapped fields differ;
//! `newer` is the side modified last, by modstamp).

use crate::projection::Side;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// The kinds of difference, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DriftKind {
    MissingInBilling,
    MissingInCrm,
    Unlinked,
    BrokenLink,
    FieldDrift,
}

impl DriftKind {
    pub const ALL: [DriftKind; 5] = [
        DriftKind::MissingInBilling,
        DriftKind::MissingInCrm,
        DriftKind::Unlinked,
        DriftKind::BrokenLink,
        DriftKind::FieldDrift,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            DriftKind::MissingInBilling => "missing_in_billing",
            DriftKind::MissingInCrm => "missing_in_crm",
            DriftKind::Unlinked => "unlinked",
            DriftKind::BrokenLink => "broken_link",
            DriftKind::FieldDrift => "field_drift",
        }
    }
}

/// Which side's values win a field drift (and an unlinked pair's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefer {
    /// The side modified last.
    Newer,
    Crm,
    Billing,
}

impl Prefer {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "newer" => Some(Prefer::Newer),
            "crm" => Some(Prefer::Crm),
            "billing" => Some(Prefer::Billing),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Prefer::Newer => "newer",
            Prefer::Crm => "crm",
            Prefer::Billing => "billing",
        }
    }
}

/// A CRM account as a query page reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmAccount {
    pub id: String,
    pub name: String,
    pub currency: Option<String>,
    /// `Billing_Account_Id__c`.
    pub billing_id: Option<String>,
    pub modstamp: DateTime<Utc>,
}

/// A Billing account as a query page reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingAccount {
    pub id: String,
    pub name: String,
    pub currency: Option<String>,
    /// `CrmId`.
    pub crm_id: Option<String>,
    pub updated: DateTime<Utc>,
}

/// One difference, with both sides' records as read (`None`: absent on that side).
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    pub kind: DriftKind,
    pub crm: Option<CrmAccount>,
    pub billing: Option<BillingAccount>,
    /// The link the view holds for the record the drift was found from.
    pub view_link: Option<String>,
    /// Field drift: the mapped fields that differ.
    pub fields: Vec<&'static str>,
    /// The side modified last, when both exist.
    pub newer: Option<Side>,
    /// The side whose values a repair writes to the other; `None`: report only.
    pub repair_from: Option<Side>,
    /// The repair must drop the view's link (its counterpart is gone).
    pub forget_link: bool,
    /// An unlinked pair that agrees and names each other: the repair only records the link.
    pub adopt: bool,
}

/// What the index keeps of one Billing account.
#[derive(Debug, Clone)]
struct Entry {
    name: Box<str>,
    currency: Option<Box<str>>,
    crm_id: Option<Box<str>>,
    updated_ms: i64,
    /// A CRM record was paired with it.
    claimed: bool,
    /// The CRM record its `CrmId` names was read.
    named_crm_seen: bool,
}

/// The Billing side, keyed by id (plus `CrmId` -> id), compared against CRM pages.
#[derive(Debug, Default)]
pub struct BillingIndex {
    by_id: HashMap<Box<str>, Entry>,
    /// `CrmId` -> the Billing ids naming it (one, unless Billing holds duplicates).
    by_crm: HashMap<Box<str>, Vec<Box<str>>>,
}

impl BillingIndex {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn insert(&mut self, account: BillingAccount) {
        let id: Box<str> = account.id.into();
        if let Some(crm) = &account.crm_id {
            self.by_crm
                .entry(crm.as_str().into())
                .or_default()
                .push(id.clone());
        }
        self.by_id.insert(
            id,
            Entry {
                name: account.name.into(),
                currency: account.currency.map(Into::into),
                crm_id: account.crm_id.map(Into::into),
                updated_ms: account.updated.timestamp_millis(),
                claimed: false,
                named_crm_seen: false,
            },
        );
    }

    fn account(&self, id: &str) -> Option<BillingAccount> {
        self.by_id.get(id).map(|e| BillingAccount {
            id: id.to_string(),
            name: e.name.to_string(),
            currency: e.currency.as_deref().map(str::to_string),
            crm_id: e.crm_id.as_deref().map(str::to_string),
            updated: DateTime::from_timestamp_millis(e.updated_ms).unwrap_or_default(),
        })
    }

    /// Compares one CRM account (with the Billing id the view links it to) against the index.
    pub fn compare_crm(
        &mut self,
        crm: &CrmAccount,
        view_link: Option<&str>,
        prefer: Prefer,
    ) -> Option<Drift> {
        for named in self
            .by_crm
            .get(crm.id.as_str())
            .cloned()
            .unwrap_or_default()
        {
            if let Some(entry) = self.by_id.get_mut(&named) {
                entry.named_crm_seen = true;
            }
        }
        let drift = |kind, billing: Option<BillingAccount>, from: Option<Side>| Drift {
            kind,
            crm: Some(crm.clone()),
            billing,
            view_link: view_link.map(str::to_string),
            fields: vec![],
            newer: None,
            repair_from: from,
            forget_link: false,
            adopt: false,
        };
        if let Some(linked) = view_link {
            let Some(billing) = self.claim(linked) else {
                return Some(Drift {
                    forget_link: true,
                    ..drift(DriftKind::BrokenLink, None, Some(Side::Crm))
                });
            };
            let fields = differing_fields(crm, &billing);
            if fields.is_empty() {
                return None;
            }
            let newer = newer_side(crm, &billing);
            return Some(Drift {
                fields,
                newer: Some(newer),
                ..drift(
                    DriftKind::FieldDrift,
                    Some(billing),
                    Some(prefer_side(prefer, newer)),
                )
            });
        }
        let named = crm
            .billing_id
            .as_deref()
            .filter(|b| self.by_id.contains_key(*b))
            .map(str::to_string)
            .or_else(|| {
                self.by_crm
                    .get(crm.id.as_str())
                    .and_then(|ids| ids.iter().find(|b| !self.by_id[*b].claimed))
                    .map(|b| b.to_string())
            });
        match named.and_then(|b| self.claim(&b)) {
            Some(billing) => {
                let newer = newer_side(crm, &billing);
                let fields = differing_fields(crm, &billing);
                let adopt = fields.is_empty()
                    && crm.billing_id.as_deref() == Some(billing.id.as_str())
                    && billing.crm_id.as_deref() == Some(crm.id.as_str());
                Some(Drift {
                    newer: Some(newer),
                    fields,
                    adopt,
                    ..drift(
                        DriftKind::Unlinked,
                        Some(billing),
                        Some(prefer_side(prefer, newer)),
                    )
                })
            }
            None if crm.billing_id.is_some() => Some(Drift {
                forget_link: true,
                ..drift(DriftKind::BrokenLink, None, Some(Side::Crm))
            }),
            None => Some(drift(DriftKind::MissingInBilling, None, Some(Side::Crm))),
        }
    }

    fn claim(&mut self, id: &str) -> Option<BillingAccount> {
        let account = self.account(id)?;
        if let Some(entry) = self.by_id.get_mut(id) {
            entry.claimed = true;
        }
        Some(account)
    }

    /// Billing ids no CRM record claimed, in id order (each then needs its view link).
    pub fn unclaimed(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, e)| !e.claimed)
            .map(|(id, _)| id.to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Classifies an unclaimed Billing account, given the CRM id the view links it to.
    pub fn classify_unclaimed(&self, id: &str, view_link: Option<&str>) -> Option<Drift> {
        let entry = self.by_id.get(id)?;
        let billing = self.account(id)?;
        let (kind, from, forget) = match (view_link, &entry.crm_id) {
            // The view, or the record itself, links to a CRM record that was not read.
            (Some(_), _) => (DriftKind::BrokenLink, Some(Side::Billing), true),
            (None, Some(_)) if !entry.named_crm_seen => {
                (DriftKind::BrokenLink, Some(Side::Billing), true)
            }
            // It names a CRM record that exists but is linked elsewhere: an operator decides.
            (None, Some(_)) => (DriftKind::Unlinked, None, false),
            (None, None) => (DriftKind::MissingInCrm, Some(Side::Billing), false),
        };
        Some(Drift {
            kind,
            crm: None,
            billing: Some(billing),
            view_link: view_link.map(str::to_string),
            fields: vec![],
            newer: None,
            repair_from: from,
            forget_link: forget,
            adopt: false,
        })
    }
}

/// Mapped fields that differ: the name, and the currency when both sides hold one.
pub fn differing_fields(crm: &CrmAccount, billing: &BillingAccount) -> Vec<&'static str> {
    let mut fields = vec![];
    if crm.name != billing.name {
        fields.push("name");
    }
    if let (Some(a), Some(b)) = (&crm.currency, &billing.currency) {
        if a != b {
            fields.push("currency");
        }
    }
    fields
}

fn newer_side(crm: &CrmAccount, billing: &BillingAccount) -> Side {
    if billing.updated > crm.modstamp {
        Side::Billing
    } else {
        Side::Crm
    }
}

fn prefer_side(prefer: Prefer, newer: Side) -> Side {
    match prefer {
        Prefer::Newer => newer,
        Prefer::Crm => Side::Crm,
        Prefer::Billing => Side::Billing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn crm(id: &str, name: &str, billing: Option<&str>, ms: i64) -> CrmAccount {
        CrmAccount {
            id: id.into(),
            name: name.into(),
            currency: None,
            billing_id: billing.map(Into::into),
            modstamp: at(ms),
        }
    }

    fn billing(id: &str, name: &str, crm: Option<&str>, ms: i64) -> BillingAccount {
        BillingAccount {
            id: id.into(),
            name: name.into(),
            currency: Some("USD".into()),
            crm_id: crm.map(Into::into),
            updated: at(ms),
        }
    }

    fn index(accounts: Vec<BillingAccount>) -> BillingIndex {
        let mut index = BillingIndex::default();
        accounts.into_iter().for_each(|a| index.insert(a));
        index
    }

    #[test]
    fn a_linked_pair_that_agrees_is_no_drift_and_is_claimed() {
        let mut idx = index(vec![billing("B1", "Acme", Some("C1"), 1)]);
        assert_eq!(
            idx.compare_crm(&crm("C1", "Acme", Some("B1"), 1), Some("B1"), Prefer::Newer),
            None
        );
        assert!(idx.unclaimed().is_empty());
    }

    #[test]
    fn field_drift_names_the_field_and_the_newer_side_and_follows_the_policy() {
        for (prefer, repair) in [
            (Prefer::Newer, Side::Billing),
            (Prefer::Crm, Side::Crm),
            (Prefer::Billing, Side::Billing),
        ] {
            let mut idx = index(vec![billing("B1", "Acme Ltd", Some("C1"), 5)]);
            let d = idx
                .compare_crm(&crm("C1", "Acme", Some("B1"), 1), Some("B1"), prefer)
                .unwrap();
            assert_eq!(d.kind, DriftKind::FieldDrift);
            assert_eq!(d.fields, ["name"]);
            assert_eq!(d.newer, Some(Side::Billing));
            assert_eq!(d.repair_from, Some(repair), "{prefer:?}");
        }
    }

    #[test]
    fn records_naming_each_other_without_a_view_link_are_unlinked_either_way_round() {
        let mut idx = index(vec![
            billing("B1", "Acme", None, 1),
            billing("B2", "Globex", Some("C2"), 1),
        ]);
        let by_crm_field = idx
            .compare_crm(&crm("C1", "Acme", Some("B1"), 1), None, Prefer::Newer)
            .unwrap();
        let by_billing_field = idx
            .compare_crm(&crm("C2", "Globex", None, 1), None, Prefer::Newer)
            .unwrap();
        for d in [&by_crm_field, &by_billing_field] {
            assert_eq!(d.kind, DriftKind::Unlinked);
            assert_eq!(d.repair_from, Some(Side::Crm));
            assert!(
                !d.adopt,
                "one side does not name the other: the repair writes it"
            );
        }
        assert!(idx.unclaimed().is_empty());
    }

    #[test]
    fn an_unlinked_pair_that_agrees_and_names_each_other_is_adopted_without_a_write() {
        let mut idx = index(vec![billing("B1", "Acme", Some("C1"), 1)]);
        let d = idx
            .compare_crm(&crm("C1", "Acme", Some("B1"), 1), None, Prefer::Newer)
            .unwrap();
        assert_eq!(d.kind, DriftKind::Unlinked);
        assert!(d.adopt);
    }

    #[test]
    fn links_to_records_that_are_gone_are_broken_on_both_sides() {
        let mut idx = index(vec![billing("B9", "Orphan", Some("C-gone"), 1)]);
        let from_view = idx
            .compare_crm(&crm("C1", "Acme", None, 1), Some("B-gone"), Prefer::Newer)
            .unwrap();
        let from_field = idx
            .compare_crm(&crm("C2", "Beta", Some("B-gone"), 1), None, Prefer::Newer)
            .unwrap();
        for d in [&from_view, &from_field] {
            assert_eq!(
                (d.kind, d.repair_from),
                (DriftKind::BrokenLink, Some(Side::Crm))
            );
            assert!(d.forget_link);
        }
        assert_eq!(idx.unclaimed(), ["B9"]);
        let d = idx.classify_unclaimed("B9", None).unwrap();
        assert_eq!(
            (d.kind, d.repair_from),
            (DriftKind::BrokenLink, Some(Side::Billing))
        );
        let d = idx.classify_unclaimed("B9", Some("C-gone")).unwrap();
        assert_eq!(d.kind, DriftKind::BrokenLink);
    }

    #[test]
    fn records_with_no_counterpart_are_missing_on_the_other_side() {
        let mut idx = index(vec![billing("B1", "Lonely", None, 1)]);
        let d = idx
            .compare_crm(&crm("C1", "Solo", None, 1), None, Prefer::Newer)
            .unwrap();
        assert_eq!(
            (d.kind, d.repair_from),
            (DriftKind::MissingInBilling, Some(Side::Crm))
        );
        let d = idx.classify_unclaimed("B1", None).unwrap();
        assert_eq!(
            (d.kind, d.repair_from),
            (DriftKind::MissingInCrm, Some(Side::Billing))
        );
    }

    #[test]
    fn a_billing_record_naming_a_crm_record_linked_elsewhere_is_reported_not_repaired() {
        let mut idx = index(vec![
            billing("B1", "Acme", Some("C1"), 1),
            billing("B2", "Acme copy", Some("C1"), 1),
        ]);
        // C1 is linked to B2 in the view; B1 also names C1.
        assert!(idx
            .compare_crm(
                &crm("C1", "Acme copy", Some("B2"), 1),
                Some("B2"),
                Prefer::Newer
            )
            .is_none());
        let d = idx.classify_unclaimed("B1", None).unwrap();
        assert_eq!((d.kind, d.repair_from), (DriftKind::Unlinked, None));
    }

    #[test]
    fn currency_counts_only_when_both_sides_hold_one() {
        let mut c = crm("C1", "Acme", None, 1);
        let b = billing("B1", "Acme", None, 1);
        assert!(differing_fields(&c, &b).is_empty());
        c.currency = Some("EUR".into());
        assert_eq!(differing_fields(&c, &b), ["currency"]);
    }
}
