//! The Billing simulator's subscriptions: create (rate plans priced in the order's currency),
//! amend, cancel and read, each mutating route behind `Idempotency-Key` replay.

use super::*;

impl Inner {
    fn rate_plans_from(
        &mut self,
        plans: &[Value],
    ) -> Result<Vec<SubscriptionRatePlanRecord>, BillingError> {
        let mut out = Vec::new();
        for plan in plans {
            let plan_id = plan["productRatePlanId"].as_str().unwrap_or_default();
            let (product, rate_plan) = self
                .billing
                .find_rate_plan(plan_id)
                .map(|(p, r)| (p.clone(), r.clone()))
                .ok_or_else(|| {
                    BillingError::new(
                        StatusCode::BAD_REQUEST,
                        50000040,
                        format!("Invalid productRatePlanId: '{plan_id}'"),
                    )
                })?;
            let overrides: HashMap<String, f64> = plan["chargeOverrides"]
                .as_array()
                .map(|o| {
                    o.iter()
                        .filter_map(|c| {
                            Some((
                                c["productRatePlanChargeId"].as_str()?.to_string(),
                                c["quantity"].as_f64()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let charges = rate_plan
                .product_rate_plan_charges
                .iter()
                .map(|c| SubscriptionChargeRecord {
                    id: self.billing.next_id(),
                    product_rate_plan_charge_id: c.id.clone(),
                    quantity: overrides.get(&c.id).copied().unwrap_or(1.0),
                })
                .collect();
            out.push(SubscriptionRatePlanRecord {
                id: self.billing.next_id(),
                product_rate_plan_id: rate_plan.id.clone(),
                product_id: product.id.clone(),
                rate_plan_name: rate_plan.name.clone(),
                charges,
            });
        }
        Ok(out)
    }

    /// Zuora refuses a subscription in a currency one of its rate plans has no price in.
    fn check_priced_in(
        &self,
        plans: &[SubscriptionRatePlanRecord],
        currency: &str,
    ) -> Result<(), BillingError> {
        for plan in plans {
            let (_, rate_plan) = self
                .billing
                .find_rate_plan(&plan.product_rate_plan_id)
                .expect("resolved by rate_plans_from");
            let priced = rate_plan
                .product_rate_plan_charges
                .iter()
                .all(|c| c.pricing.iter().any(|p| p.currency == currency));
            if !priced {
                return Err(BillingError::new(
                    StatusCode::BAD_REQUEST,
                    53100320,
                    format!(
                        "The currency {currency} is not available for product rate plan '{}'",
                        rate_plan.id
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn billing_create_subscription(
        &mut self,
        config: &SandboxConfig,
        body: &Map<String, Value>,
        correlation_id: Option<&str>,
    ) -> Answer {
        let key = text(body, "accountKey").unwrap_or_default();
        let account_id = self.billing.account_key(&key).ok_or_else(|| {
            BillingError::new(
                StatusCode::BAD_REQUEST,
                50000040,
                format!("Invalid accountKey: '{key}'"),
            )
        })?;
        let date = text(body, "contractEffectiveDate")
            .filter(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
            .ok_or_else(|| {
                BillingError::invalid("contractEffectiveDate", "must be a date yyyy-mm-dd")
            })?;
        let plans = body
            .get("subscribeToRatePlans")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .cloned()
            .ok_or_else(|| BillingError::invalid("subscribeToRatePlans", "may not be empty"))?;
        let rate_plans = self.rate_plans_from(&plans)?;
        let currency = match text(body, "currency") {
            Some(currency) => {
                self.check_priced_in(&rate_plans, &currency)?;
                currency
            }
            None => self.billing.accounts[&account_id].currency.clone(),
        };
        let id = self.billing.next_id();
        let sub = SubscriptionRecord {
            currency,
            version: 1,
            subscription_number: format!("A-S{:08}", self.billing.subscriptions.len() + 1),
            id: id.clone(),
            account_id,
            status: "Active".into(),
            contract_effective_date: date,
            cancelled_date: None,
            rate_plans,
            custom: custom_fields(body),
        };
        let answer = json!({
            "success": true,
            "subscriptionId": sub.id,
            "subscriptionNumber": sub.subscription_number,
            "contractedMrr": 0,
            "totalContractedValue": 0,
        });
        let data = Self::subscription_callout_data(&sub);
        self.billing.subscriptions.insert(id, sub);
        self.callout(
            config,
            "SubscriptionCreated",
            "subscription",
            data,
            correlation_id,
        );
        Ok((StatusCode::OK, answer))
    }

    fn billing_amend_subscription(
        &mut self,
        config: &SandboxConfig,
        key: &str,
        body: &Map<String, Value>,
        correlation_id: Option<&str>,
    ) -> Answer {
        let id = self
            .billing
            .subscription_key(key)
            .ok_or_else(|| BillingError::not_found("subscription", key))?;
        if self.billing.subscriptions[&id].status == "Cancelled" {
            return Err(BillingError::new(
                StatusCode::BAD_REQUEST,
                53200020,
                "The subscription has been cancelled and cannot be amended",
            ));
        }
        let add = body
            .get("add")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let added = self.rate_plans_from(&add)?;
        let remove: Vec<String> = body
            .get("remove")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|x| x["ratePlanId"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let sub = self
            .billing
            .subscriptions
            .get_mut(&id)
            .expect("key resolved above");
        if let Some(missing) = remove
            .iter()
            .find(|r| !sub.rate_plans.iter().any(|p| &&p.id == r))
        {
            return Err(BillingError::new(
                StatusCode::BAD_REQUEST,
                50000040,
                format!("Invalid ratePlanId: '{missing}'"),
            ));
        }
        sub.rate_plans.retain(|p| !remove.contains(&p.id));
        sub.rate_plans.extend(added);
        sub.custom.extend(custom_fields(body));
        sub.version += 1;
        let data = Self::subscription_callout_data(sub);
        self.callout(
            config,
            "SubscriptionAmended",
            "subscription",
            data,
            correlation_id,
        );
        Ok((
            StatusCode::OK,
            json!({"success": true, "subscriptionId": id, "totalDeltaMrr": 0}),
        ))
    }

    fn billing_cancel_subscription(
        &mut self,
        config: &SandboxConfig,
        key: &str,
        body: &Map<String, Value>,
        correlation_id: Option<&str>,
    ) -> Answer {
        let id = self
            .billing
            .subscription_key(key)
            .ok_or_else(|| BillingError::not_found("subscription", key))?;
        let policy = text(body, "cancellationPolicy").unwrap_or_default();
        let today = chrono::Utc::now().date_naive().to_string();
        let date = match policy.as_str() {
            "SpecificDate" => text(body, "cancellationEffectiveDate").ok_or_else(|| {
                BillingError::invalid("cancellationEffectiveDate", "is required for SpecificDate")
            })?,
            "EndOfCurrentTerm" | "EndOfLastInvoicePeriod" => today,
            _ => {
                return Err(BillingError::invalid(
                    "cancellationPolicy",
                    "must be EndOfCurrentTerm, EndOfLastInvoicePeriod or SpecificDate",
                ))
            }
        };
        let sub = self
            .billing
            .subscriptions
            .get_mut(&id)
            .expect("key resolved above");
        if sub.status == "Cancelled" {
            return Err(BillingError::new(
                StatusCode::BAD_REQUEST,
                53200020,
                "The subscription has already been cancelled",
            ));
        }
        sub.status = "Cancelled".into();
        sub.cancelled_date = Some(date.clone());
        sub.version += 1;
        let data = Self::subscription_callout_data(sub);
        self.callout(
            config,
            "SubscriptionCancelled",
            "subscription",
            data,
            correlation_id,
        );
        Ok((
            StatusCode::OK,
            json!({"success": true, "subscriptionId": id, "cancelledDate": date, "totalDeltaMrr": 0}),
        ))
    }

    fn billing_get_subscription(&self, key: &str) -> Answer {
        let id = self
            .billing
            .subscription_key(key)
            .ok_or_else(|| BillingError::not_found("subscription", key))?;
        let s = &self.billing.subscriptions[&id];
        let account_number = self
            .billing
            .accounts
            .get(&s.account_id)
            .map(|a| a.account_number.clone());
        let mut body = json!({
            "success": true,
            "id": s.id,
            "subscriptionNumber": s.subscription_number,
            "accountId": s.account_id,
            "accountNumber": account_number,
            "status": s.status,
            "version": s.version,
            "currency": s.currency,
            "termType": "EVERGREEN",
            "contractEffectiveDate": s.contract_effective_date,
            "cancelledDate": s.cancelled_date,
            "ratePlans": s.rate_plans.iter().map(|p| json!({
                "id": p.id, "productId": p.product_id, "productRatePlanId": p.product_rate_plan_id,
                "ratePlanName": p.rate_plan_name,
                "ratePlanCharges": p.charges.iter().map(|c| json!({
                    "id": c.id, "productRatePlanChargeId": c.product_rate_plan_charge_id, "quantity": c.quantity,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        for (k, v) in &s.custom {
            body[k] = v.clone();
        }
        Ok((StatusCode::OK, body))
    }
}

/// `POST /v1/subscriptions`.
pub(crate) async fn create_subscription(
    State(state): State<SharedState>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let cid = correlation(&headers);
    idempotent(&state, &headers, "POST /v1/subscriptions", &raw, |inner| {
        let body = parse_body(&raw)?;
        inner.billing_create_subscription(&state.config, &body, cid.as_deref())
    })
    .await
}

/// `GET /v1/subscriptions/{key}`.
pub(crate) async fn get_subscription(
    State(state): State<SharedState>,
    Path(key): Path<String>,
) -> Response {
    answer(state.lock().billing_get_subscription(&key))
}

/// `PUT /v1/subscriptions/{key}` — amend.
pub(crate) async fn amend_subscription(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let cid = correlation(&headers);
    let route = format!("PUT /v1/subscriptions/{key}");
    idempotent(&state, &headers, &route, &raw, |inner| {
        let body = parse_body(&raw)?;
        inner.billing_amend_subscription(&state.config, &key, &body, cid.as_deref())
    })
    .await
}

/// `PUT /v1/subscriptions/{key}/cancel`.
pub(crate) async fn cancel_subscription(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let cid = correlation(&headers);
    let route = format!("PUT /v1/subscriptions/{key}/cancel");
    idempotent(&state, &headers, &route, &raw, |inner| {
        let body = parse_body(&raw)?;
        inner.billing_cancel_subscription(&state.config, &key, &body, cid.as_deref())
    })
    .await
}
