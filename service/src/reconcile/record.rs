//! The events a run records: `ReconciliationStarted`, `DriftDetected`,
//! `ReconciliationCompleted` on `system-reconcile-<run id>`, and the observed-state events of
//! a repair on the account's own stream. Every one carries the run's correlation id and a
//! dedupe key derived from the run, so a resumed or repeated run records each fact once.

use chrono::{DateTime, SecondsFormat, Utc};
use projections::catalogue::{AccountObserved, DriftDetected};
use projections::projection::{entity, Side};
use projections::reconcile::{BillingAccount, CrmAccount, Drift};
use projections::reconcile_events::SideValues;
use projections::{CorrelationId, DomainEvent, EventId, IdError, NewEvent, Source};
use projections::{SourceEventId, StreamId};

/// The run's correlation id doubles as its id: `ledger audit <run id>` is the trace.
pub struct RunIds {
    pub run: CorrelationId,
}

impl RunIds {
    pub fn stream(&self) -> Result<StreamId, IdError> {
        StreamId::parse(projections::reconcile_events::run_stream(
            &self.run.to_string(),
        ))
    }

    /// A system event of this run, deduplicated by `key` within the run.
    pub fn event(
        &self,
        stream: StreamId,
        key: &str,
        causation: Option<EventId>,
        event: &DomainEvent,
    ) -> Result<NewEvent, IdError> {
        Ok(NewEvent::from_domain(
            stream,
            Source::System,
            SourceEventId::parse(format!("reconcile:{}:{key}", self.run))?,
            self.run,
            causation,
            Utc::now(),
            event,
        ))
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn crm_values(crm: Option<&CrmAccount>) -> SideValues {
    crm.map(|c| SideValues {
        id: Some(c.id.clone()),
        name: Some(c.name.clone()),
        currency: c.currency.clone(),
        names: c.billing_id.clone(),
        modstamp: Some(rfc3339(c.modstamp)),
    })
    .unwrap_or_default()
}

fn billing_values(billing: Option<&BillingAccount>) -> SideValues {
    billing
        .map(|b| SideValues {
            id: Some(b.id.clone()),
            name: Some(b.name.clone()),
            currency: b.currency.clone(),
            names: b.crm_id.clone(),
            modstamp: Some(rfc3339(b.updated)),
        })
        .unwrap_or_default()
}

/// `(dedupe key, event)` of one drift.
pub fn drift_detected(run: &CorrelationId, drift: &Drift) -> (String, DomainEvent) {
    let crm_id = drift.crm.as_ref().map(|c| c.id.clone());
    let billing_id = drift.billing.as_ref().map(|b| b.id.clone());
    let key = format!(
        "drift:{}:{}:{}",
        drift.kind.as_str(),
        crm_id.as_deref().unwrap_or("-"),
        billing_id.as_deref().unwrap_or("-")
    );
    let event = DomainEvent::DriftDetected(DriftDetected {
        run_id: run.to_string(),
        entity: entity::ACCOUNT.to_string(),
        kind: drift.kind.as_str().to_string(),
        crm_id,
        billing_id,
        crm: Box::new(crm_values(drift.crm.as_ref())),
        billing: Box::new(billing_values(drift.billing.as_ref())),
        view_link: drift.view_link.clone(),
        fields: drift.fields.iter().map(|f| f.to_string()).collect(),
        newer: drift.newer.map(|s| s.as_str().to_string()),
        repair_from: drift.repair_from.map(|s| s.as_str().to_string()),
        extra: Default::default(),
    });
    (key, event)
}

/// The observed-state events that repair `drift`: one on the winning record's stream, or
/// one on each side's stream when the pair is adopted as it is; none when the drift is
/// reported only.
pub fn observed(run: &CorrelationId, drift: &Drift) -> Vec<(StreamId, String, DomainEvent)> {
    let sides = match (drift.adopt, drift.repair_from) {
        (true, _) => vec![Side::Crm, Side::Billing],
        (false, Some(side)) => vec![side],
        (false, None) => vec![],
    };
    sides
        .into_iter()
        .filter_map(|side| observed_on(run, drift, side))
        .collect()
}

fn observed_on(
    run: &CorrelationId,
    drift: &Drift,
    side: Side,
) -> Option<(StreamId, String, DomainEvent)> {
    let payload = |id: &str, name: &str, currency: &Option<String>, linked: Option<String>, at| {
        AccountObserved {
            account_id: id.to_string(),
            name: name.to_string(),
            currency: currency.clone(),
            linked_id: linked,
            forget_link: drift.forget_link,
            adopt: drift.adopt,
            run_id: run.to_string(),
            drift: drift.kind.as_str().to_string(),
            modstamp: rfc3339(at),
            extra: Default::default(),
        }
    };
    let (stream, id, at, event) = match side {
        Side::Crm => {
            let c = drift.crm.as_ref()?;
            let linked = drift.billing.as_ref().map(|b| b.id.clone());
            let p = payload(&c.id, &c.name, &c.currency, linked, c.modstamp);
            let stream = format!("crm-{}-{}", entity::ACCOUNT, c.id);
            (
                stream,
                &c.id,
                c.modstamp,
                DomainEvent::CrmAccountObserved(p),
            )
        }
        Side::Billing => {
            let b = drift.billing.as_ref()?;
            let linked = drift.crm.as_ref().map(|c| c.id.clone());
            let p = payload(&b.id, &b.name, &b.currency, linked, b.updated);
            let stream = format!("billing-{}-{}", entity::ACCOUNT, b.id);
            (
                stream,
                &b.id,
                b.updated,
                DomainEvent::BillingAccountObserved(p),
            )
        }
    };
    let stream = StreamId::parse(stream).ok()?;
    let key = format!("observed:{id}:{}", rfc3339(at));
    Some((stream, key, event))
}
