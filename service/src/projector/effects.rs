//! The `Effects` port: executes one domain command on the CRM or Billing system and reports
//! its result as the domain's `CallResult` (success or permanent failure) or a transient
//! failure to retry by redelivery. It decides nothing and records nothing in the ledger.
//! A command is re-executed after a crash or a redelivery with the same idempotency key, so
//! every Billing write sends it, and an amend or a cancel that finds the subscription already
//! in its target state reports the success of that same call instead of acting twice.

use super::bulk::plan_collections;
use super::catalog::{rate_plan_for, CatalogCache};
use crate::connectors::billing::{
    AccountUpdate, CancellationPolicy, ChargeOverride, NewAccount, NewSubscription,
    RatePlanSelection, SubscribedPlan, SubscriptionAmendment,
};
use crate::connectors::concurrency::{CallLimiter, CallLimits};
use crate::connectors::config::{ConnectorsConfig, OAuthClient, TokenConfig};
use crate::connectors::crm::{
    CollectionRecord, CrmAccountBody, OrderUpdate, PriceFields, ProductFields,
};
use crate::connectors::oauth::{ClientCredentials, ClientCredentialsStore};
use crate::connectors::{
    ApiToken, BillingClient, ClientConfig, ConnectorError, CrmClient, IdempotencyKey, ServiceName,
    TokenProvider, TokenSource,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use projections::commands::{
    BillingCommand, Call, CallResult, Command, CommandMeta, CrmAccountTarget, CrmCommand, PlanLine,
};
use projections::RecordedEvent;
use std::sync::Arc;

/// A call that failed in a way that may pass (throttling, 5xx, timeouts), after the
/// connector's own retries. The reason names the system and status, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TransientCallFailure {
    pub reason: String,
    pub attempts: u32,
}

#[async_trait]
pub trait Effects: Send + Sync {
    /// Makes the call with the command's idempotency key and correlation id.
    async fn execute(&self, command: &Command) -> Result<CallResult, TransientCallFailure>;

    /// Makes several independent calls; one result per command, in order. Connectors send
    /// CRM upserts by external id as sObject Collections (see `bulk`); by default each
    /// command is one call.
    async fn execute_many(
        &self,
        commands: &[Command],
    ) -> Vec<Result<CallResult, TransientCallFailure>> {
        let mut results = Vec::with_capacity(commands.len());
        for command in commands {
            results.push(self.execute(command).await);
        }
        results
    }

    /// Sees a delivered batch before it is applied (a catalog change clears what was
    /// cached of the catalog).
    fn observe(&self, _events: &[RecordedEvent]) {}

    /// Billing catalog reads made so far; a batch's `CatalogLookups` metric is its growth.
    fn catalog_lookups(&self) -> u64 {
        0
    }
}

/// `Effects` through the CRM and Billing HTTP clients. Creates carry the command's
/// idempotency key (Billing `Idempotency-Key`); CRM writes are upserts by external id or
/// updates by record id, idempotent by nature; every call carries the correlation id.
pub struct ConnectorEffects {
    crm: CrmClient,
    billing: BillingClient,
    pricebook_id: Option<String>,
    default_currency: String,
    catalog: CatalogCache,
    limiter: CallLimiter,
}

impl ConnectorEffects {
    pub fn new(
        crm: CrmClient,
        billing: BillingClient,
        pricebook_id: Option<String>,
        default_currency: String,
    ) -> Self {
        Self {
            crm,
            billing,
            pricebook_id,
            default_currency,
            catalog: CatalogCache::default(),
            limiter: CallLimiter::default(),
        }
    }

    /// The same effects with at most `limits` calls in flight per system.
    pub fn with_limits(mut self, limits: CallLimits) -> Self {
        self.limiter = CallLimiter::new(limits);
        self
    }

    /// Clients for `config`; tokens from Parameter Store (`aws` must then be given) or from
    /// the systems' OAuth endpoints.
    pub fn from_config(
        config: &ConnectorsConfig,
        aws: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, ConnectorError> {
        let (crm, billing) = Self::clients(config, aws)?;
        Ok(Self::new(
            crm,
            billing,
            config.pricebook_id.clone(),
            config.default_currency.clone(),
        )
        .with_limits(config.call_limits))
    }

    /// The two API clients of `config` over one token source (also what a reconciliation
    /// reads through).
    pub fn clients(
        config: &ConnectorsConfig,
        aws: Option<&aws_config::SdkConfig>,
    ) -> Result<(CrmClient, BillingClient), ConnectorError> {
        let tokens: Arc<dyn TokenSource> = match (&config.tokens, aws) {
            (TokenConfig::ClientCredentials { crm, billing }, _) => {
                let client = |c: &OAuthClient| -> Result<ClientCredentials, ConnectorError> {
                    Ok(ClientCredentials {
                        token_url: c.token_url.clone(),
                        client_id: c.client_id.clone(),
                        client_secret: ApiToken::new(c.client_secret.clone()).map_err(|_| {
                            ConnectorError::InvalidRequest {
                                operation: "token source",
                                field: "client_secret",
                                reason: "must not be empty".into(),
                            }
                        })?,
                    })
                };
                let store = ClientCredentialsStore::new([
                    (ServiceName::crm(), client(crm)?),
                    (ServiceName::billing(), client(billing)?),
                ]);
                Arc::new(TokenProvider::new(
                    Arc::new(store),
                    TokenProvider::DEFAULT_TTL,
                ))
            }
            (TokenConfig::ParameterStore, Some(aws)) => {
                Arc::new(TokenProvider::for_lambda(aws_sdk_ssm::Client::new(aws)))
            }
            (TokenConfig::ParameterStore, None) => {
                return Err(ConnectorError::InvalidRequest {
                    operation: "token source",
                    field: "tokens",
                    reason: "Parameter Store tokens need an AWS configuration".into(),
                })
            }
        };
        let crm = CrmClient::new(
            ClientConfig::new(config.crm_base_url.clone(), ServiceName::crm()),
            tokens.clone(),
        )?;
        let billing = BillingClient::new(
            ClientConfig::new(config.billing_base_url.clone(), ServiceName::billing()),
            tokens,
        )?;
        Ok((crm, billing))
    }

    async fn billing(
        &self,
        command: &BillingCommand,
        meta: &CommandMeta,
    ) -> Result<CallResult, ConnectorError> {
        let cid = meta.correlation_id;
        match command {
            BillingCommand::CreateAccount {
                crm_account_id,
                name,
                currency,
            } => {
                let account = NewAccount {
                    name: name.clone(),
                    currency: currency
                        .clone()
                        .unwrap_or_else(|| self.default_currency.clone()),
                    crm_id: Some(crm_account_id.clone()),
                    bill_cycle_day: 1,
                    auto_pay: false,
                    bill_to_contact: None,
                };
                let created = self
                    .billing
                    .create_account(&account, &idempotency_key(meta)?, cid)
                    .await?;
                Ok(succeeded(created.account_id, true))
            }
            BillingCommand::UpdateAccount {
                billing_account_id,
                crm_account_id,
                name,
                // Zuora fixes an account's currency at creation; there is nothing to send.
                currency: _,
            } => {
                let update = AccountUpdate {
                    name: Some(name.clone()),
                    crm_id: Some(crm_account_id.clone()),
                };
                self.billing
                    .update_account(billing_account_id, &update, &idempotency_key(meta)?, cid)
                    .await?;
                Ok(succeeded(billing_account_id.clone(), false))
            }
            BillingCommand::CreateSubscription {
                billing_account_id,
                crm_order_id,
                term_start_date,
                lines,
                order_number: _,
                currency,
            } => {
                const OP: &str = "create_subscription";
                let currency = self.currency(currency.as_deref());
                let rate_plans = self.rate_plans(OP, lines, currency, cid).await?;
                let subscription = NewSubscription {
                    account_key: billing_account_id.clone(),
                    contract_effective_date: effective_date(term_start_date.as_deref()),
                    rate_plans,
                    crm_order_id: Some(crm_order_id.clone()),
                    currency: Some(currency.to_string()),
                };
                let created = self
                    .billing
                    .create_subscription(&subscription, &idempotency_key(meta)?, cid)
                    .await?;
                // Subscription streams are keyed by the number: Zuora gives every
                // subscription version a new id, the number stays.
                Ok(succeeded(created.subscription_number, true))
            }
            BillingCommand::AmendSubscription {
                subscription_id,
                effective_date: date,
                lines,
                currency,
                crm_order_id: _,
            } => {
                const OP: &str = "amend_subscription";
                let currency = self.currency(currency.as_deref());
                let add = self.rate_plans(OP, lines, currency, cid).await?;
                let current = self.billing.get_subscription(subscription_id, cid).await?;
                // A re-run of this command (after a crash or a lost answer) finds its own
                // amendment done: amending again would be a second amendment.
                if already_subscribed(&current.rate_plans, &add) {
                    return Ok(succeeded(subscription_id.clone(), false));
                }
                let amendment = SubscriptionAmendment {
                    contract_effective_date: effective_date(date.as_deref()),
                    add,
                    remove: current.rate_plans.into_iter().map(|p| p.id).collect(),
                };
                self.billing
                    .amend_subscription(subscription_id, &amendment, &idempotency_key(meta)?, cid)
                    .await?;
                Ok(succeeded(subscription_id.clone(), false))
            }
            BillingCommand::CancelSubscription {
                subscription_id,
                effective_date: date,
                crm_order_id: _,
            } => {
                let policy = match date.as_deref().and_then(parse_date) {
                    Some(day) => CancellationPolicy::SpecificDate(day),
                    None => CancellationPolicy::EndOfCurrentTerm,
                };
                let cancelled = self
                    .billing
                    .cancel_subscription(subscription_id, policy, &idempotency_key(meta)?, cid)
                    .await;
                match cancelled {
                    Ok(_) => Ok(succeeded(subscription_id.clone(), false)),
                    // "Already cancelled" is the target state: the same call succeeded
                    // before (a re-run after a crash, or a person cancelled it too).
                    Err(e) if !e.is_transient() => {
                        let current = self.billing.get_subscription(subscription_id, cid).await?;
                        if current.status == "Cancelled" {
                            Ok(succeeded(subscription_id.clone(), false))
                        } else {
                            Err(e)
                        }
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The order's currency, or the configured default when the order names none.
    fn currency<'a>(&'a self, currency: Option<&'a str>) -> &'a str {
        currency
            .filter(|c| !c.trim().is_empty())
            .unwrap_or(&self.default_currency)
    }

    /// Subscription lines by product code (Billing product SKU): the product's rate plan
    /// priced in `currency`, with the quantity on each of its charges. Products come from the
    /// catalog cache: one product read per SKU on a miss, none in steady state.
    async fn rate_plans(
        &self,
        operation: &'static str,
        lines: &[PlanLine],
        currency: &str,
        cid: projections::CorrelationId,
    ) -> Result<Vec<RatePlanSelection>, ConnectorError> {
        let mut selections = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let invalid = |reason: String| ConnectorError::InvalidRequest {
                operation,
                field: "lines",
                reason: format!("line {i}: product code {:?} {reason}", line.product_code),
            };
            let product = self
                .catalog
                .product(&self.billing, &line.product_code, cid)
                .await?
                .ok_or_else(|| invalid("is not in the Billing catalog".into()))?;
            let plan = rate_plan_for(&product, currency).ok_or_else(|| {
                invalid(format!(
                    "has no rate plan priced in {currency} in the Billing catalog"
                ))
            })?;
            selections.push(RatePlanSelection {
                product_rate_plan_id: plan.id.clone(),
                charge_overrides: plan
                    .product_rate_plan_charges
                    .iter()
                    .map(|c| ChargeOverride {
                        product_rate_plan_charge_id: c.id.clone(),
                        quantity: line.quantity,
                    })
                    .collect(),
            });
        }
        Ok(selections)
    }

    async fn crm(
        &self,
        command: &CrmCommand,
        meta: &CommandMeta,
    ) -> Result<CallResult, ConnectorError> {
        let cid = meta.correlation_id;
        match command {
            CrmCommand::UpsertAccount {
                target,
                billing_account_id,
                name,
                currency,
            } => {
                let fields = CrmAccountBody {
                    name: Some(name.clone()),
                    currency: currency.clone(),
                };
                match target {
                    CrmAccountTarget::RecordId(id) => {
                        self.crm
                            .update_account(id, &fields, Some(billing_account_id), cid)
                            .await?;
                        Ok(succeeded(id.clone(), false))
                    }
                    CrmAccountTarget::BillingAccountId => {
                        let upserted = self
                            .crm
                            .upsert_account(billing_account_id, &fields, cid)
                            .await?;
                        Ok(succeeded(upserted.id, upserted.created))
                    }
                }
            }
            CrmCommand::UpdateOrderStatus { order_id, status } => {
                let update = OrderUpdate {
                    status: Some(status.clone()),
                    billing_subscription_id: None,
                };
                self.crm.update_order(order_id, &update, cid).await?;
                Ok(succeeded(order_id.clone(), false))
            }
            CrmCommand::UpsertProduct {
                billing_product_id,
                product_code,
                name,
                active,
            } => {
                let product = ProductFields {
                    billing_product_id: billing_product_id.clone(),
                    name: name.clone(),
                    product_code: product_code.clone(),
                    active: *active,
                };
                let upserted = self.crm.upsert_product(&product, cid).await?;
                Ok(succeeded(upserted.id, upserted.created))
            }
            CrmCommand::UpsertPricebookEntry {
                external_id,
                billing_product_id,
                currency,
                unit_price,
                active,
                billing_rate_plan_id: _,
            } => {
                let pricebook_id = self.pricebook_id()?;
                let price = PriceFields {
                    billing_price_id: external_id.clone(),
                    billing_product_id: billing_product_id.clone(),
                    pricebook_id,
                    currency: currency.clone(),
                    unit_price: *unit_price,
                    active: *active,
                };
                let upserted = self.crm.upsert_price(&price, cid).await?;
                Ok(succeeded(upserted.id, upserted.created))
            }
        }
    }
}

/// Whether a subscription's rate plans are exactly `wanted` (same catalog plans, same charge
/// quantities, in any order): the state an amendment to `wanted` leaves.
fn already_subscribed(current: &[SubscribedPlan], wanted: &[RatePlanSelection]) -> bool {
    let key = |plan: &str, charges: Vec<(String, f64)>| {
        let mut charges: Vec<(String, String)> = charges
            .into_iter()
            .map(|(c, q)| (c, format!("{q}")))
            .collect();
        charges.sort();
        (plan.to_string(), charges)
    };
    let mut have: Vec<_> = current
        .iter()
        .map(|p| key(&p.product_rate_plan_id, p.quantities.clone()))
        .collect();
    let mut want: Vec<_> = wanted
        .iter()
        .map(|p| {
            let charges = p
                .charge_overrides
                .iter()
                .map(|c| (c.product_rate_plan_charge_id.clone(), c.quantity))
                .collect();
            key(&p.product_rate_plan_id, charges)
        })
        .collect();
    have.sort();
    want.sort();
    have == want
}

fn succeeded(id: String, created: bool) -> CallResult {
    CallResult::Succeeded { id, created }
}

fn idempotency_key(meta: &CommandMeta) -> Result<IdempotencyKey, ConnectorError> {
    IdempotencyKey::parse(meta.idempotency_key.clone())
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.get(..10).unwrap_or(text), "%Y-%m-%d").ok()
}

/// The given `YYYY-MM-DD[...]` day, or today (UTC) when there is none.
fn effective_date(text: Option<&str>) -> NaiveDate {
    text.and_then(parse_date)
        .unwrap_or_else(|| chrono::Utc::now().date_naive())
}

impl ConnectorEffects {
    /// `command` as one record of a collection upsert (`bulk::collection_sobject` said it
    /// can be one).
    fn collection_record(&self, command: &Command) -> Result<CollectionRecord, ConnectorError> {
        let cid = command.meta.correlation_id;
        match &command.call {
            Call::Crm(CrmCommand::UpsertAccount {
                billing_account_id,
                name,
                currency,
                ..
            }) => Ok(CollectionRecord::account(
                billing_account_id,
                &CrmAccountBody {
                    name: Some(name.clone()),
                    currency: currency.clone(),
                },
                cid,
            )),
            Call::Crm(CrmCommand::UpsertProduct {
                billing_product_id,
                product_code,
                name,
                active,
            }) => Ok(CollectionRecord::product(
                &ProductFields {
                    billing_product_id: billing_product_id.clone(),
                    name: name.clone(),
                    product_code: product_code.clone(),
                    active: *active,
                },
                cid,
            )),
            Call::Crm(CrmCommand::UpsertPricebookEntry {
                external_id,
                billing_product_id,
                currency,
                unit_price,
                active,
                billing_rate_plan_id: _,
            }) => Ok(CollectionRecord::price(
                &PriceFields {
                    billing_price_id: external_id.clone(),
                    billing_product_id: billing_product_id.clone(),
                    pricebook_id: self.pricebook_id()?,
                    currency: currency.clone(),
                    unit_price: *unit_price,
                    active: *active,
                },
                cid,
            )),
            _ => Err(ConnectorError::InvalidRequest {
                operation: "upsert_collection",
                field: "call",
                reason: "only CRM upserts by external id travel in a collection".into(),
            }),
        }
    }

    fn pricebook_id(&self) -> Result<String, ConnectorError> {
        self.pricebook_id
            .clone()
            .ok_or_else(|| ConnectorError::InvalidRequest {
                operation: "upsert_price",
                field: "CRM_PRICEBOOK_ID",
                reason: "is not configured".into(),
            })
    }

    /// One collection call for `commands[indices]`; each command's result in `results`.
    async fn collection(
        &self,
        commands: &[Command],
        indices: &[usize],
        results: &mut [Option<Result<CallResult, TransientCallFailure>>],
    ) {
        let mut records = Vec::with_capacity(indices.len());
        let mut sent = Vec::with_capacity(indices.len());
        for &i in indices {
            match self.collection_record(&commands[i]) {
                Ok(record) => {
                    records.push(record);
                    sent.push(i);
                }
                Err(e) => results[i] = Some(classify(Err(e))),
            }
        }
        let Some(&first) = sent.first() else { return };
        // The call's own correlation id is the first record's; each record carries its own.
        let cid = commands[first].meta.correlation_id;
        match self.crm.upsert_collection(&records, cid).await {
            Ok(answers) => {
                for (i, answer) in sent.into_iter().zip(answers) {
                    results[i] = Some(match answer {
                        Ok(upserted) => Ok(succeeded(upserted.id, upserted.created)),
                        // A rejected record is permanent: it is that event's SyncFailed,
                        // naming the field, and the other records stand.
                        Err(rejected) => Ok(CallResult::Failed {
                            reason: format!("crm upsert_collection: {rejected}"),
                            attempts: 1,
                        }),
                    });
                }
            }
            Err(e) => {
                let failure = classify(Err(e));
                for i in sent {
                    results[i] = Some(failure.clone());
                }
            }
        }
    }
}

/// A connector result as the runner sees it: success, permanent failure, or transient.
fn classify(
    result: Result<CallResult, ConnectorError>,
) -> Result<CallResult, TransientCallFailure> {
    match result {
        Ok(result) => Ok(result),
        Err(e) if e.is_transient() => Err(TransientCallFailure {
            reason: e.to_string(),
            attempts: e.attempts(),
        }),
        Err(e) => Ok(CallResult::Failed {
            reason: e.to_string(),
            attempts: e.attempts(),
        }),
    }
}

#[async_trait]
impl Effects for ConnectorEffects {
    async fn execute(&self, command: &Command) -> Result<CallResult, TransientCallFailure> {
        // Held through the connector's own retries: a retry is still a call in flight.
        let _slot = self.limiter.acquire(&command.call).await;
        let result = match &command.call {
            Call::Billing(call) => self.billing(call, &command.meta).await,
            Call::Crm(call) => self.crm(call, &command.meta).await,
        };
        classify(result)
    }

    async fn execute_many(
        &self,
        commands: &[Command],
    ) -> Vec<Result<CallResult, TransientCallFailure>> {
        let mut results: Vec<Option<Result<CallResult, TransientCallFailure>>> =
            vec![None; commands.len()];
        for indices in plan_collections(commands) {
            self.collection(commands, &indices, &mut results).await;
        }
        let mut out = Vec::with_capacity(commands.len());
        for (command, result) in commands.iter().zip(results) {
            out.push(match result {
                Some(result) => result,
                None => self.execute(command).await,
            });
        }
        out
    }

    fn observe(&self, events: &[RecordedEvent]) {
        self.catalog.observe(events);
    }

    fn catalog_lookups(&self) -> u64 {
        self.catalog.lookups()
    }
}
