//! The Entra-style token endpoint and ARM's bearer check.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn good_secret_gets_a_bearer_token() {
    let sim = Sim::start().await;
    let t = sim.token("tenant-a", "citystack-test", "not-a-secret").await;
    assert_eq!(t.status, StatusCode::OK);
    assert_eq!(t.body["token_type"], "Bearer");
    assert_eq!(t.body["expires_in"], 3600);
    assert_eq!(t.body["ext_expires_in"], 3600);
    assert!(t.body["access_token"].as_str().is_some_and(|s| s.len() > 20));
}

#[tokio::test]
async fn wrong_secret_is_401_invalid_client() {
    let sim = Sim::start().await;
    let t = sim.token("tenant-a", "citystack-test", "wrong").await;
    assert_eq!(t.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.body["error"], "invalid_client");
    assert!(t.body["error_description"].as_str().unwrap().starts_with("AADSTS7000215"));
    assert_eq!(t.body["error_codes"], json!([7000215]));

    let unknown = sim.token("tenant-a", "nobody", "x").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.body["error"], "unauthorized_client");
}

#[tokio::test]
async fn registered_clients_are_tenant_scoped() {
    let sim = Sim::start().await;
    let r = sim
        .admin(
            "POST",
            "/_admin/clients",
            Some(json!({"tenant": "tenant-b", "clientId": "app-b", "clientSecret": "s3cret"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(sim.token("tenant-b", "app-b", "s3cret").await.status, StatusCode::OK);
    assert_eq!(sim.token("tenant-b", "app-b", "nope").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(sim.token("tenant-c", "app-b", "s3cret").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn arm_requires_a_valid_bearer_token() {
    let sim = Sim::start().await;
    let url = sim.url(&format!("/subscriptions/{SUB}/resourcegroups/rg?api-version={API}"));
    let none = read(sim.http.get(&url).send().await.unwrap()).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.code(), "AuthenticationFailed");
    assert!(none.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer ")));

    let bogus = read(sim.http.get(&url).bearer_auth("not-a-token").send().await.unwrap()).await;
    assert_eq!(bogus.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bogus.code(), "AuthenticationFailed");
}

#[tokio::test]
async fn expired_tokens_are_invalid_authentication_token() {
    let sim = Sim::start_with(armsim::Config { token_lifetime: Duration::from_secs(1), ..Default::default() }).await;
    let t = sim.token("tenant-a", "citystack-test", "not-a-secret").await;
    assert_eq!(t.body["expires_in"], 1);
    let token = t.body["access_token"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let url = sim.url(&format!("/subscriptions/{SUB}/resourcegroups/rg?api-version={API}"));
    let r = read(sim.http.get(&url).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "InvalidAuthenticationToken");
}

#[tokio::test]
async fn tokens_for_another_audience_are_refused() {
    let sim = Sim::start().await;
    let form = [
        ("client_id", "citystack-test"),
        ("client_secret", "not-a-secret"),
        ("grant_type", "client_credentials"),
        ("scope", "https://storage.azure.com/.default"),
    ];
    let t = read(sim.http.post(sim.url("/t/oauth2/v2.0/token")).form(&form).send().await.unwrap()).await;
    let token = t.body["access_token"].as_str().unwrap().to_string();
    let url = sim.url(&format!("/subscriptions/{SUB}/resourcegroups/rg?api-version={API}"));
    let r = read(sim.http.get(&url).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "InvalidAuthenticationTokenAudience");

    let bad_scope = [
        ("client_id", "citystack-test"),
        ("client_secret", "not-a-secret"),
        ("grant_type", "client_credentials"),
        ("scope", "https://management.azure.com"),
    ];
    let t = read(sim.http.post(sim.url("/t/oauth2/v2.0/token")).form(&bad_scope).send().await.unwrap()).await;
    assert_eq!(t.status, StatusCode::BAD_REQUEST);
    assert_eq!(t.body["error"], "invalid_scope");
}
