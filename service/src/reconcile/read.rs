//! Reading both systems' accounts page by page, within a call budget: the SOQL and ZOQL the
//! reconciliation sends, and the mapping of their records to `projections::reconcile`'s.

use super::ReconcileError;
use crate::connectors::{BillingClient, CrmClient, QueryPage};
use chrono::{DateTime, Utc};
use projections::reconcile::{BillingAccount, CrmAccount};
use projections::CorrelationId;
use serde_json::{Map, Value};

/// CRM accounts after `after` (an Id), in Id order, so a stopped run resumes by key.
pub fn soql(after: Option<&str>) -> String {
    let filter = after
        .map(|id| format!(" WHERE Id > '{}'", id.replace('\'', "\\'")))
        .unwrap_or_default();
    format!(
        "SELECT Id, Name, CurrencyIsoCode, Billing_Account_Id__c, SystemModstamp FROM Account{filter} ORDER BY Id"
    )
}

/// Every Billing account (ZOQL has no ORDER BY: the whole side is indexed before comparing).
pub const ZOQL: &str = "select Id, Name, Currency, CrmId, UpdatedDate from Account";

/// Read calls made per system, against an optional budget for both together.
#[derive(Debug, Clone, Copy, Default)]
pub struct Budget {
    pub max: Option<u64>,
    pub crm: u64,
    pub billing: u64,
}

impl Budget {
    pub fn used(&self) -> u64 {
        self.crm + self.billing
    }

    /// Whether one more call fits.
    pub fn allows_one(&self) -> bool {
        self.max.is_none_or(|max| self.used() < max)
    }
}

/// Pages through a query of one system; `None` once done or when the budget is spent
/// (`exhausted` tells which).
pub struct Pager<'a> {
    system: System<'a>,
    next: Option<String>,
    started: bool,
    pub exhausted: bool,
    correlation: CorrelationId,
}

enum System<'a> {
    Crm(&'a CrmClient, String),
    Billing(&'a BillingClient),
}

impl<'a> Pager<'a> {
    pub fn crm(client: &'a CrmClient, soql: String, correlation: CorrelationId) -> Self {
        Self::new(System::Crm(client, soql), correlation)
    }

    pub fn billing(client: &'a BillingClient, correlation: CorrelationId) -> Self {
        Self::new(System::Billing(client), correlation)
    }

    fn new(system: System<'a>, correlation: CorrelationId) -> Self {
        Self {
            system,
            next: None,
            started: false,
            exhausted: false,
            correlation,
        }
    }

    pub async fn next_page(
        &mut self,
        budget: &mut Budget,
    ) -> Result<Option<QueryPage>, ReconcileError> {
        if self.started && self.next.is_none() {
            return Ok(None);
        }
        if !budget.allows_one() {
            self.exhausted = true;
            return Ok(None);
        }
        let page = match (&self.system, &self.next) {
            (System::Crm(c, soql), None) => c.query(soql, self.correlation).await,
            (System::Crm(c, _), Some(url)) => c.query_more(url, self.correlation).await,
            (System::Billing(b), None) => b.query(ZOQL, self.correlation).await,
            (System::Billing(b), Some(locator)) => b.query_more(locator, self.correlation).await,
        }?;
        match self.system {
            System::Crm(..) => budget.crm += 1,
            System::Billing(_) => budget.billing += 1,
        }
        self.started = true;
        self.next = page.next.clone();
        Ok(Some(page))
    }
}

fn text(record: &Map<String, Value>, field: &str) -> Option<String> {
    record
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn stamp(
    system: &'static str,
    id: &str,
    record: &Map<String, Value>,
    field: &str,
) -> Result<DateTime<Utc>, ReconcileError> {
    let raw = text(record, field).ok_or_else(|| ReconcileError::Record {
        system,
        id: id.to_string(),
        reason: format!("{field} is missing"),
    })?;
    DateTime::parse_from_rfc3339(&raw)
        .or_else(|_| DateTime::parse_from_str(&raw, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| ReconcileError::Record {
            system,
            id: id.to_string(),
            reason: format!("{field} {raw:?} is not a date-time: {e}"),
        })
}

pub fn crm_account(record: &Map<String, Value>) -> Result<CrmAccount, ReconcileError> {
    let id = text(record, "Id").ok_or_else(|| ReconcileError::Record {
        system: "crm",
        id: "?".into(),
        reason: "Id is missing".into(),
    })?;
    Ok(CrmAccount {
        name: text(record, "Name").unwrap_or_default(),
        currency: text(record, "CurrencyIsoCode"),
        billing_id: text(record, "Billing_Account_Id__c"),
        modstamp: stamp("crm", &id, record, "SystemModstamp")?,
        id,
    })
}

pub fn billing_account(record: &Map<String, Value>) -> Result<BillingAccount, ReconcileError> {
    let id = text(record, "Id").ok_or_else(|| ReconcileError::Record {
        system: "billing",
        id: "?".into(),
        reason: "Id is missing".into(),
    })?;
    Ok(BillingAccount {
        name: text(record, "Name").unwrap_or_default(),
        currency: text(record, "Currency"),
        crm_id: text(record, "CrmId"),
        updated: stamp("billing", &id, record, "UpdatedDate")?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crm_query_resumes_after_a_key_and_quotes_it() {
        assert!(soql(None).ends_with("FROM Account ORDER BY Id"));
        assert!(soql(Some("001'x")).contains("WHERE Id > '001\\'x' ORDER BY Id"));
    }

    #[test]
    fn a_record_without_its_modstamp_is_refused_naming_the_field() {
        let record = serde_json::json!({"Id": "001", "Name": "Acme"});
        let e = crm_account(record.as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("SystemModstamp is missing"), "{e}");
    }
}
