//! The Billing simulator's product catalog: products with rate plans and per-currency
//! charges, changed by `Sandbox::upsert_product` (emitting the catalog callouts) and read by
//! the paged list and the one-product routes.

use super::*;

impl Inner {
    /// Adds or changes a catalog product (matched by SKU; rate plans and charges by name) and
    /// emits the product / rate plan / price callouts for what changed.
    pub(crate) fn billing_upsert_product(
        &mut self,
        config: &SandboxConfig,
        mut spec: Product,
    ) -> Product {
        let existing = self.billing.products.iter().position(|p| p.sku == spec.sku);
        let old = existing.map(|i| self.billing.products[i].clone());
        spec.id = old
            .as_ref()
            .map(|p| p.id.clone())
            .unwrap_or_else(|| self.billing.next_id());
        for plan in &mut spec.product_rate_plans {
            let old_plan = old
                .as_ref()
                .and_then(|p| p.product_rate_plans.iter().find(|r| r.name == plan.name));
            plan.id = old_plan
                .map(|r| r.id.clone())
                .unwrap_or_else(|| self.billing.next_id());
            for charge in &mut plan.product_rate_plan_charges {
                let old_charge = old_plan.and_then(|r| {
                    r.product_rate_plan_charges
                        .iter()
                        .find(|c| c.name == charge.name)
                });
                charge.id = old_charge
                    .map(|c| c.id.clone())
                    .unwrap_or_else(|| self.billing.next_id());
            }
        }
        let product_changed = old
            .as_ref()
            .is_none_or(|p| p.name != spec.name || p.effective_end_date != spec.effective_end_date);
        if product_changed {
            let data = json!({"id": spec.id, "sku": spec.sku, "name": spec.name, "effectiveEndDate": spec.effective_end_date});
            let kind = if old.is_some() {
                "ProductUpdated"
            } else {
                "ProductCreated"
            };
            self.callout(config, kind, "product", data, None);
        }
        for plan in &spec.product_rate_plans {
            let old_plan = old
                .as_ref()
                .and_then(|p| p.product_rate_plans.iter().find(|r| r.id == plan.id));
            if old_plan.is_none_or(|r| r.name != plan.name) {
                let data = json!({"id": plan.id, "productId": spec.id, "name": plan.name});
                let kind = if old_plan.is_some() {
                    "ProductRatePlanUpdated"
                } else {
                    "ProductRatePlanCreated"
                };
                self.callout(config, kind, "productRatePlan", data, None);
            }
            for charge in &plan.product_rate_plan_charges {
                let old_charge = old_plan.and_then(|r| {
                    r.product_rate_plan_charges
                        .iter()
                        .find(|c| c.id == charge.id)
                });
                if old_charge.is_none_or(|c| c.pricing != charge.pricing || c.name != charge.name) {
                    let data = json!({
                        "id": charge.id, "productRatePlanId": plan.id, "name": charge.name,
                        "pricing": charge.pricing,
                    });
                    let kind = if old_charge.is_some() {
                        "ProductRatePlanChargeUpdated"
                    } else {
                        "ProductRatePlanChargeCreated"
                    };
                    self.callout(config, kind, "productRatePlanCharge", data, None);
                }
            }
        }
        match existing {
            Some(i) => self.billing.products[i] = spec.clone(),
            None => self.billing.products.push(spec.clone()),
        }
        spec
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Page {
    page: Option<usize>,
    page_size: Option<usize>,
}

/// `GET /v1/catalog/products?page=&pageSize=`.
pub(crate) async fn list_products(
    State(state): State<SharedState>,
    Query(page): Query<Page>,
) -> Response {
    let size = page.page_size.unwrap_or(10).clamp(1, 40);
    let number = page.page.unwrap_or(1).max(1);
    let inner = state.lock();
    let products: Vec<&Product> = inner
        .billing
        .products
        .iter()
        .skip((number - 1) * size)
        .take(size)
        .collect();
    let mut body = json!({"products": products, "success": true});
    if inner.billing.products.len() > number * size {
        body["nextPage"] = json!(format!(
            "http://{}/v1/catalog/products?page={}&pageSize={size}",
            state.public_host(),
            number + 1
        ));
    }
    Json(body).into_response()
}

/// `GET /v1/catalog/products/{product-key}`: one product by id or SKU, with its rate plans,
/// charges and prices, in the shape "List all products" lists it.
pub(crate) async fn get_product(
    State(state): State<SharedState>,
    Path(key): Path<String>,
) -> Response {
    let inner = state.lock();
    match inner.billing.find_product(&key) {
        Some(product) => {
            let mut body = json!(product);
            body["success"] = json!(true);
            Json(body).into_response()
        }
        None => BillingError::not_found("product", &key).into_response(),
    }
}
