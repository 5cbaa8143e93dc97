//! External commands as data: what a process manager asks the shell to do to the CRM or the
//! Billing system, with the idempotency key, trace id and the outcome to record once the call
//! returns. `complete` turns a call result into outcome events; nothing here performs a call.

use crate::catalogue::{DomainEvent, EchoSuppressed, Extra, SyncDeferred, SyncFailed, SyncOutcome};
use crate::envelope::{NewEvent, RecordedEvent};
use crate::ids::{CorrelationId, EventId, Source, SourceEventId, StreamId};
use crate::projection::{entity_stream, Decision, Side};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Written onto every object we create or change (Billing custom field / CRM field), and
/// expected back on the echo of that write, so the echo is not synced back.
pub const ORIGIN: &str = "sync-ledger";

/// Our origin marker can be a field that stays on the record after our write (a Zuora custom
/// field does), so it proves an echo only while a write of ours is unconfirmed, or on the
/// first sight of a record (which then is one we created); later it may ride on a user's edit.
pub fn origin_proves_echo(origin: Option<&str>, awaiting_echo: bool, first_sight: bool) -> bool {
    origin == Some(ORIGIN) && (awaiting_echo || first_sight)
}

/// The event a command or outcome is caused by. Outcome ids (the dedupe key and the event id)
/// derive from `event_id`, so a decision re-run after a crash records nothing twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub event_id: EventId,
    pub stream_id: StreamId,
    pub correlation_id: CorrelationId,
}

impl Cause {
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            event_id: event.event_id,
            stream_id: event.stream_id.clone(),
            correlation_id: event.correlation_id,
        }
    }

    /// An outcome of this cause on `stream`, deduplicated by `"<cause id>:<discriminator>"`,
    /// with the event id derived from that key: same cause and discriminator, same envelope
    /// (given the same `now`, which only sets `occurred_at`).
    pub fn outcome(
        &self,
        stream: StreamId,
        discriminator: &str,
        now: DateTime<Utc>,
        event: &DomainEvent,
    ) -> NewEvent {
        let source_event_id = SourceEventId::parse(format!("{}:{}", self.event_id, discriminator))
            .expect("a UUID followed by a discriminator is a valid source event id");
        NewEvent::derived(
            stream,
            Source::System,
            source_event_id,
            self.correlation_id,
            Some(self.event_id),
            now,
            event,
        )
    }
}

/// What every command carries besides its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandMeta {
    /// `"<causing event id>:<step>"`: Billing `Idempotency-Key` header; CRM upserts are by
    /// external id and idempotent by nature, the key still goes into the request for tracing.
    pub idempotency_key: String,
    /// Sent as `X-Correlation-Id`.
    pub correlation_id: CorrelationId,
    /// Written onto the target object so its echo can be recognised ([`ORIGIN`]).
    pub origin: String,
    pub cause: Cause,
    /// Names the step within the decision (`billing-create-account`, ...).
    pub step: String,
}

impl CommandMeta {
    pub fn new(cause: &Cause, step: &str) -> Self {
        Self {
            idempotency_key: format!("{}:{}", cause.event_id, step),
            correlation_id: cause.correlation_id,
            origin: ORIGIN.to_string(),
            cause: cause.clone(),
            step: step.to_string(),
        }
    }
}

/// One line of a subscription, by the product code both systems share (Billing resolves the
/// rate plan from the SKU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanLine {
    pub product_code: String,
    pub quantity: f64,
    #[serde(default)]
    pub unit_price: Option<f64>,
}

/// Calls on the Billing system (Zuora shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum BillingCommand {
    /// `POST /v1/accounts` with `CrmId` set.
    CreateAccount {
        crm_account_id: String,
        name: String,
        currency: Option<String>,
    },
    /// `PUT /v1/accounts/{id}`.
    UpdateAccount {
        billing_account_id: String,
        crm_account_id: String,
        name: String,
        currency: Option<String>,
    },
    /// `POST /v1/subscriptions`, carrying the CRM order id.
    CreateSubscription {
        billing_account_id: String,
        crm_order_id: String,
        order_number: Option<String>,
        term_start_date: Option<String>,
        currency: Option<String>,
        lines: Vec<PlanLine>,
    },
    /// `PUT /v1/subscriptions/{key}`: replace the lines. `subscription_id` holds the
    /// subscription *number* (a Zuora subscription key that, unlike the id, survives amends).
    AmendSubscription {
        subscription_id: String,
        crm_order_id: String,
        effective_date: Option<String>,
        /// The order's currency: the rate plans added are the ones priced in it.
        #[serde(default)]
        currency: Option<String>,
        lines: Vec<PlanLine>,
    },
    /// `PUT /v1/subscriptions/{key}/cancel`; `subscription_id` is the number, as above.
    CancelSubscription {
        subscription_id: String,
        crm_order_id: String,
        effective_date: Option<String>,
    },
}

/// How a CRM account upsert finds its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", content = "id", rename_all = "snake_case")]
pub enum CrmAccountTarget {
    /// `PATCH /sobjects/Account/<Id>`: we know the record (it is linked, or the Billing
    /// account carries its CRM id). Never creates a second record.
    RecordId(String),
    /// `PATCH /sobjects/Account/Billing_Account_Id__c/<billing id>`: creates or updates.
    BillingAccountId,
}

/// Calls on the CRM (Salesforce shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum CrmCommand {
    /// Account upsert; always sets `Billing_Account_Id__c`.
    UpsertAccount {
        target: CrmAccountTarget,
        billing_account_id: String,
        name: String,
        currency: Option<String>,
    },
    /// `PATCH /sobjects/Order/<Id>` with `Status`.
    UpdateOrderStatus { order_id: String, status: String },
    /// `PATCH /sobjects/Product2/Billing_Product_Id__c/<id>`.
    UpsertProduct {
        billing_product_id: String,
        product_code: String,
        name: String,
        active: bool,
    },
    /// `PATCH /sobjects/PricebookEntry/Billing_Price_Key__c/<rate plan id>:<currency>`,
    /// referencing the product by its `Billing_Product_Id__c`.
    UpsertPricebookEntry {
        external_id: String,
        billing_rate_plan_id: String,
        billing_product_id: String,
        currency: String,
        unit_price: f64,
        active: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "system", rename_all = "snake_case")]
pub enum Call {
    Billing(BillingCommand),
    Crm(CrmCommand),
}

/// Which outcome event a successful call records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutcomeKind {
    AccountSynced,
    OrderSynced,
    ProductSynced,
}

/// The outcome a command records when it succeeds, minus what only the call result knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOutcome {
    pub kind: OutcomeKind,
    pub projection: String,
    pub direction: String,
    /// Action when the call created the object; `action_existing` otherwise.
    pub action_created: String,
    pub action_existing: String,
    /// The id on the other side of the link from the target (known before the call).
    pub crm_id: Option<String>,
    pub billing_id: Option<String>,
    /// The target object's side: the call result fills its id.
    pub target_side: Side,
    /// The target's entity, naming the stream the mirror goes to; `None` records no mirror
    /// (when the mirror could not carry what that stream's views route by).
    pub target_entity: Option<String>,
    /// What the call writes, so the target's view can recognise the echo.
    pub written: Value,
    /// Routing fields the outcome must carry (see `order_sync::ACCOUNT_ROUTE`).
    pub extra: Extra,
    /// The stream the outcome is recorded on (usually the cause's).
    pub stream: StreamId,
}

/// A call to make, and what to record about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub meta: CommandMeta,
    pub call: Call,
    pub on_success: PendingOutcome,
}

/// What the shell reports back after a call (after its own retries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CallResult {
    /// `id` is the target object's id as its stream is named (`<source>-<entity>-<id>`):
    /// the Billing account id, the subscription *number*, the CRM record id. `created` when
    /// the call made the object (Salesforce 201, a new Zuora object).
    Succeeded { id: String, created: bool },
    /// Permanent failure, or transient retries exhausted: the reason must not carry secrets.
    Failed { reason: String, attempts: u32 },
}

/// Which attempt at a command's call a result belongs to. Outcome ids derive from the cause
/// and the step, so every attempt of the same decision would record the same events; this is
/// the one input that tells attempts apart where the audit must show each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The call as the decision made it (live projection, or a redelivery of that decision):
    /// a repeat records nothing new.
    Decided,
    /// A deliberate re-run by the redrive run with this id (the edge mints it). A success
    /// keeps the decided ids, so it dedupes against any other success of the same call; a
    /// failure is recorded once per run (`<step>:failed:redrive:<run>`), because the first
    /// failure's key is taken and the audit must show every attempt.
    Redrive(EventId),
}

/// The outcome events of a finished call: on success the sync outcome on the outcome stream,
/// plus a copy (`mirror`) on the target object's stream so the target's views learn the link
/// and what we wrote; on failure `SyncFailed`. The shell appends them as they are.
/// This is the decided attempt; redrive uses [`complete_attempt`].
pub fn complete(command: &Command, result: &CallResult, now: DateTime<Utc>) -> Vec<NewEvent> {
    complete_attempt(command, result, Attempt::Decided, now)
}

/// [`complete`] for an explicit [`Attempt`].
pub fn complete_attempt(
    command: &Command,
    result: &CallResult,
    attempt: Attempt,
    now: DateTime<Utc>,
) -> Vec<NewEvent> {
    let pending = &command.on_success;
    let cause = &command.meta.cause;
    match result {
        CallResult::Failed { reason, attempts } => {
            let mut extra = pending.extra.clone();
            extra.insert("step".into(), Value::String(command.meta.step.clone()));
            extra.insert("direction".into(), Value::String(pending.direction.clone()));
            let failed = DomainEvent::SyncFailed(SyncFailed {
                projection: pending.projection.clone(),
                reason: reason.clone(),
                attempts: *attempts,
                extra,
            });
            let discriminator = match attempt {
                Attempt::Decided => format!("{}:failed", command.meta.step),
                Attempt::Redrive(run) => format!("{}:failed:redrive:{run}", command.meta.step),
            };
            vec![cause.outcome(pending.stream.clone(), &discriminator, now, &failed)]
        }
        CallResult::Succeeded { id, created } => {
            let (crm_id, billing_id) = match pending.target_side {
                Side::Crm => (Some(id.clone()), pending.billing_id.clone()),
                Side::Billing => (pending.crm_id.clone(), Some(id.clone())),
            };
            let mut outcome = SyncOutcome {
                projection: pending.projection.clone(),
                direction: pending.direction.clone(),
                action: if *created {
                    pending.action_created.clone()
                } else {
                    pending.action_existing.clone()
                },
                crm_id,
                billing_id,
                written: Some(pending.written.clone()),
                mirror: false,
                extra: pending.extra.clone(),
            };
            let wrap = |o: SyncOutcome| match pending.kind {
                OutcomeKind::AccountSynced => DomainEvent::AccountSynced(o),
                OutcomeKind::OrderSynced => DomainEvent::OrderSynced(o),
                OutcomeKind::ProductSynced => DomainEvent::ProductSynced(o),
            };
            let step = &command.meta.step;
            let mut events =
                vec![cause.outcome(pending.stream.clone(), step, now, &wrap(outcome.clone()))];
            let target = pending
                .target_entity
                .as_deref()
                .and_then(|entity| entity_stream(pending.target_side, entity, id));
            if let Some(target) = target {
                if target != pending.stream {
                    outcome.mirror = true;
                    events.push(cause.outcome(
                        target,
                        &format!("{step}:mirror"),
                        now,
                        &wrap(outcome),
                    ));
                }
            }
            events
        }
    }
}

/// The outcome events a decision records without calling anything (`EchoSuppressed`,
/// `SyncDeferred`, `SyncFailed`), for one projection and cause; on the cause's stream unless
/// told otherwise.
pub struct Notes<'a> {
    projection: &'a str,
    cause: &'a Cause,
    now: DateTime<Utc>,
    stream: StreamId,
    extra: Extra,
}

impl<'a> Notes<'a> {
    pub fn new(projection: &'a str, cause: &'a Cause, now: DateTime<Utc>) -> Self {
        Self {
            projection,
            cause,
            now,
            stream: cause.stream_id.clone(),
            extra: Extra::new(),
        }
    }

    /// Record on `stream` instead of the cause's.
    pub fn on(self, stream: StreamId) -> Self {
        Self { stream, ..self }
    }

    /// Fields every note must carry (a route).
    pub fn with(self, extra: Extra) -> Self {
        Self { extra, ..self }
    }

    fn note(&self, discriminator: &str, event: DomainEvent) -> NewEvent {
        self.cause
            .outcome(self.stream.clone(), discriminator, self.now, &event)
    }

    pub fn echo(&self, reason: &str) -> Decision {
        Decision::outcome(self.note(
            "echo",
            DomainEvent::EchoSuppressed(EchoSuppressed {
                projection: self.projection.to_string(),
                reason: reason.to_string(),
                extra: self.extra.clone(),
            }),
        ))
    }

    pub fn deferred(&self, reason: &str, waiting_for: String) -> Decision {
        Decision::outcome(self.note(
            "deferred",
            DomainEvent::SyncDeferred(SyncDeferred {
                projection: self.projection.to_string(),
                reason: reason.to_string(),
                waiting_for,
                extra: self.extra.clone(),
            }),
        ))
    }

    /// A failure found without calling anything: recorded, never retried.
    pub fn failed(&self, discriminator: &str, reason: String) -> NewEvent {
        self.note(
            discriminator,
            DomainEvent::SyncFailed(SyncFailed {
                projection: self.projection.to_string(),
                reason,
                attempts: 0,
                extra: self.extra.clone(),
            }),
        )
    }
}

/// An event of a stream a projection follows that this build cannot read: recorded as
/// `SyncFailed` (nothing is silently skipped) and never retried.
pub fn undecodable(
    projection: &str,
    cause: &Cause,
    now: DateTime<Utc>,
    reason: String,
) -> NewEvent {
    Notes::new(projection, cause, now).failed(&format!("undecodable:{projection}"), reason)
}
