//! The official Azure SDK for Rust against armsim, unchanged: azure_identity's
//! ClientSecretCredential with the authority host pointed at armsim, and an azure_core Pipeline
//! with BearerTokenAuthorizationPolicy for `https://management.azure.com/.default`. Only the
//! endpoints and the trusted CA differ from production.

use crate::common::*;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{ClientOptions, Context, Method, Pipeline, Request, StatusCode, Transport, Url};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use serde_json::{Value, json};
use std::sync::Arc;

const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// What an operator would build: transport = reqwest trusting the given CA; cloud = custom
/// authority host.
fn sdk_pipeline(
    endpoint: &str,
    ca_pem: &str,
    tenant: &str,
    client_id: &str,
    secret: &str,
) -> (Pipeline, Arc<ClientSecretCredential>) {
    let transport = Transport::new(Arc::new(client(ca_pem)));

    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = endpoint.to_string();
    let cloud: Arc<CloudConfiguration> = Arc::new(cloud.into());

    let credential = ClientSecretCredential::new(
        tenant,
        client_id.to_string(),
        Secret::new(secret.to_string()),
        Some(ClientSecretCredentialOptions {
            client_options: ClientOptions {
                transport: Some(transport.clone()),
                cloud: Some(cloud),
                ..Default::default()
            },
        }),
    )
    .expect("credential");

    let auth: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(credential.clone(), [ARM_SCOPE]));
    let pipeline = Pipeline::new(
        Some("citystack"),
        Some("0.1.0"),
        ClientOptions { transport: Some(transport), ..Default::default() },
        Vec::new(),
        vec![auth],
        None,
    );
    (pipeline, credential)
}

async fn send(
    pipeline: &Pipeline,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> azure_core::Result<(StatusCode, Value)> {
    let mut req = Request::new(Url::parse(url)?, method);
    if let Some(b) = body {
        req.insert_header("content-type", "application/json");
        req.set_body(serde_json::to_vec(&b)?);
    }
    let resp = pipeline.send(&Context::new(), &mut req, None).await?;
    let status = resp.status();
    let bytes = resp.body().as_ref().to_vec();
    let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes)? };
    Ok((status, json))
}

#[tokio::test]
async fn azure_sdk_client_secret_credential_and_pipeline_work_unchanged() {
    let sim = Sim::start().await;
    let endpoint = sim.server.endpoint.clone();
    let (pipeline, credential) = sdk_pipeline(
        &endpoint,
        &sim.server.ca_pem,
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "citystack-test",
        "not-a-secret",
    );

    // The credential on its own.
    let token = credential.get_token(&[ARM_SCOPE], None).await.expect("get_token");
    assert!(token.token.secret().starts_with("armsim."));

    // PUT then GET a resource group through the pipeline.
    let rg_url = format!("{endpoint}/subscriptions/{SUB}/resourcegroups/rg-sdk?api-version=2021-04-01");
    let (status, body) =
        send(&pipeline, Method::Put, &rg_url, Some(json!({"location": "South East Asia"}))).await.expect("PUT");
    assert_eq!(status, StatusCode::Created);
    assert_eq!(body["location"], "southeastasia");
    let (status, body) = send(&pipeline, Method::Get, &rg_url, None).await.expect("GET");
    assert_eq!(status, StatusCode::Ok);
    assert_eq!(body["id"], format!("/subscriptions/{SUB}/resourceGroups/rg-sdk"));

    // ARM errors come back as azure_core HttpResponse errors carrying the ARM error code.
    let missing = format!("{endpoint}/subscriptions/{SUB}/resourcegroups/nope?api-version=2021-04-01");
    let err = send(&pipeline, Method::Get, &missing, None).await.expect_err("404");
    match err.kind() {
        azure_core::error::ErrorKind::HttpResponse { status, error_code, .. } => {
            assert_eq!(*status, StatusCode::NotFound);
            assert_eq!(error_code.as_deref(), Some("ResourceGroupNotFound"));
        }
        other => panic!("unexpected error kind {other:?}"),
    }

    // The token endpoint was called once (the credential caches), and nothing else Entra-ish.
    let counts = sim.admin("GET", "/_admin/counts", None).await.body;
    let token_calls: u64 = counts
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains("/oauth2/v2.0/token"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(token_calls, 2, "one for the harness, one for the SDK credential: {counts}");
}

#[tokio::test]
async fn azure_sdk_reports_a_wrong_secret_as_a_credential_error() {
    let sim = Sim::start().await;
    let (pipeline, _) = sdk_pipeline(&sim.server.endpoint, &sim.server.ca_pem, "tenant-a", "citystack-test", "wrong");
    let url = format!("{}/subscriptions/{SUB}/resourcegroups/rg?api-version=2021-04-01", sim.server.endpoint);
    let err = send(&pipeline, Method::Get, &url, None).await.expect_err("bad secret");
    assert!(matches!(err.kind(), azure_core::error::ErrorKind::Credential), "{err:?}");
    // The retry policy wraps the credential error; the Entra code is in the chain.
    assert!(format!("{err:?}").contains("AADSTS7000215"), "{err:?}");
}

#[tokio::test]
async fn azure_sdk_retries_injected_throttling() {
    let sim = Sim::start().await;
    sim.admin("POST", "/_admin/faults", Some(json!({"method": "GET", "pathContains": "resourcegroups/rg-retry", "status": 429, "retryAfter": 1, "count": 1}))).await;
    let (pipeline, _) =
        sdk_pipeline(&sim.server.endpoint, &sim.server.ca_pem, "tenant-a", "citystack-test", "not-a-secret");
    let url = format!("{}/subscriptions/{SUB}/resourcegroups/rg-retry?api-version=2021-04-01", sim.server.endpoint);
    sim.put_group(SUB, "rg-retry").await;
    let started = std::time::Instant::now();
    let (status, _) = send(&pipeline, Method::Get, &url, None).await.expect("retried GET");
    assert_eq!(status, StatusCode::Ok);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "Retry-After: 1 was honoured");
    let counts = sim.admin("GET", "/_admin/counts", None).await.body;
    assert_eq!(counts[format!("GET /subscriptions/{SUB}/resourcegroups/rg-retry")], 2);
}
