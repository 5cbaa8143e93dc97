//! The `audit_api` Lambda handler: HTTP API v2 `GET /audit/{id}` answered with the audit query
//! as JSON. The route is IAM-authorised in the template; the handler also refuses (403) a
//! request whose context carries no IAM caller, so a misrouted or unauthorised call reads nothing.

mod config;

pub use config::AuditApiConfig;

use crate::audit::{answer, Answer};
use crate::ledger::EventLog;
use crate::views::ViewStore;
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{header, HeaderValue, Method};
use std::sync::Arc;

/// Built once per container (clients are reused across invocations).
pub struct AuditApi {
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
}

impl AuditApi {
    pub fn new(log: Arc<dyn EventLog>, views: Arc<dyn ViewStore>) -> Self {
        Self { log, views }
    }

    pub async fn handle(&self, request: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let context = &request.request_context;
        let caller = context
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone().or_else(|| iam.caller_id.clone()));
        let Some(caller) = caller else {
            return respond(Answer::error(
                403,
                "this API is IAM-authorised: sign the request with SigV4",
            ));
        };
        if context.http.method != Method::GET {
            return respond(Answer::error(405, "only GET /audit/{id} is served"));
        }
        let Some(id) = audit_id(&request) else {
            return respond(Answer::error(404, "only GET /audit/{id} is served"));
        };
        let span = tracing::info_span!("audit", caller = %caller, request_id = context.request_id.as_deref().unwrap_or(""));
        let _enter = span.enter();
        let answer = answer(self.log.as_ref(), self.views.as_ref(), &id).await;
        tracing::info!(status = answer.status, "audit query answered");
        respond(answer)
    }
}

/// The `{id}` of `/audit/{id}`: the route's path parameter (`proxy` for `/audit/{proxy+}`,
/// already URL-decoded by API Gateway), else the raw path after `/audit/`.
fn audit_id(request: &ApiGatewayV2httpRequest) -> Option<String> {
    for name in ["proxy", "id"] {
        if let Some(id) = request.path_parameters.get(name) {
            return Some(id.clone());
        }
    }
    let path = request.raw_path.as_deref()?;
    let (_, id) = path.split_once("/audit/")?;
    Some(id.to_string())
}

fn respond(answer: Answer) -> ApiGatewayV2httpResponse {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(answer.status);
    response.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.body = Some(Body::Text(answer.body.to_string()));
    response
}

impl super::bootstrap::Handler for AuditApi {
    type Event = ApiGatewayV2httpRequest;
    type Response = ApiGatewayV2httpResponse;
    type Error = std::convert::Infallible;

    async fn handle(
        &self,
        request: ApiGatewayV2httpRequest,
    ) -> Result<ApiGatewayV2httpResponse, Self::Error> {
        Ok(AuditApi::handle(self, request).await)
    }
}
