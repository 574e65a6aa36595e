//! Fault injection, out-of-band changes, the request log, throttling.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;

fn storage(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/{name}")
}

#[tokio::test]
async fn injected_429_with_retry_after_then_recovers() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    let f = sim
        .admin(
            "POST",
            "/_admin/faults",
            Some(
                json!({"method": "PUT", "pathContains": "storageAccounts", "status": 429, "retryAfter": 5, "count": 2}),
            ),
        )
        .await;
    assert_eq!(f.status, StatusCode::CREATED);
    let body = json!({"location": "westeurope"});
    // GETs do not match the rule.
    assert_eq!(sim.arm("GET", &storage("acct1"), None).await.status, StatusCode::NOT_FOUND);
    for _ in 0..2 {
        let r = sim.arm("PUT", &storage("acct1"), Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.header("retry-after"), Some("5"));
        assert!(!r.code().is_empty());
    }
    assert_eq!(sim.arm("PUT", &storage("acct1"), Some(body)).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn injected_500() {
    let sim = Sim::start().await;
    sim.admin(
        "POST",
        "/_admin/faults",
        Some(json!({"method": "GET", "pathContains": "resourcegroups/rg1", "status": 500})),
    )
    .await;
    let r = sim.arm("GET", &format!("/subscriptions/{SUB}/resourcegroups/rg1"), None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.code(), "InternalServerError");
    assert_eq!(
        sim.arm("GET", &format!("/subscriptions/{SUB}/resourcegroups/rg1"), None).await.code(),
        "ResourceGroupNotFound"
    );
}

#[tokio::test]
async fn injected_operation_failure() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    sim.admin(
        "POST",
        "/_admin/faults",
        Some(json!({"method": "PUT", "pathContains": "storageAccounts/acct1", "operation": "Failed", "code": "InternalServerError", "message": "disk on fire"})),
    )
    .await;
    let c = sim.arm("PUT", &storage("acct1"), Some(json!({"location": "westeurope"}))).await;
    assert_eq!(c.status, StatusCode::CREATED);
    assert_eq!(c.body["properties"]["provisioningState"], "Creating");
    let status = sim.wait_status(c.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(status.body["status"], "Failed");
    assert_eq!(status.body["error"]["code"], "InternalServerError");
    assert_eq!(status.body["error"]["message"], "disk on fire");
    let loc = sim.arm("GET", c.header("location").unwrap(), None).await;
    assert_eq!(loc.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(loc.code(), "InternalServerError");
    let g = sim.arm("GET", &storage("acct1"), None).await;
    assert_eq!(g.body["properties"]["provisioningState"], "Failed");

    // Retrying the PUT starts creation again, and this time it succeeds.
    let retry = sim.arm("PUT", &storage("acct1"), Some(json!({"location": "westeurope"}))).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.body["properties"]["provisioningState"], "Creating");
    let ok = sim.wait_status(retry.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(ok.body["status"], "Succeeded");
}

#[tokio::test]
async fn out_of_band_delete() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    sim.arm("PUT", &storage("acct1"), Some(json!({"location": "westeurope"}))).await;
    let d = sim.admin("DELETE", &format!("/_admin/resources?id={}", storage("acct1")), None).await;
    assert_eq!(d.body["deleted"], true);
    assert_eq!(sim.arm("GET", &storage("acct1"), None).await.code(), "ResourceNotFound");
    let g = sim.admin("DELETE", &format!("/_admin/resources?id=/subscriptions/{SUB}/resourceGroups/rg1"), None).await;
    assert_eq!(g.body["deleted"], true);
    assert_eq!(
        sim.arm("GET", &format!("/subscriptions/{SUB}/resourcegroups/rg1"), None).await.code(),
        "ResourceGroupNotFound"
    );
}

#[tokio::test]
async fn request_log_and_counts() {
    let sim = Sim::start().await;
    sim.admin("POST", "/_admin/reset-log", None).await;
    sim.put_group(SUB, "rg1").await;
    sim.arm("GET", &format!("/subscriptions/{SUB}/resourcegroups/rg1"), None).await;
    sim.arm("GET", &format!("/subscriptions/{SUB}/resourcegroups/rg1"), None).await;
    sim.arm("GET", &format!("/subscriptions/{SUB}/resourcegroups/nope"), None).await;

    let log = sim.admin("GET", "/_admin/requests", None).await;
    let entries = log.body.as_array().unwrap();
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert_eq!(entries[0]["method"], "PUT");
    assert_eq!(entries[0]["path"], format!("/subscriptions/{SUB}/resourcegroups/rg1"));
    assert_eq!(entries[0]["status"], 201);
    assert_eq!(entries[0]["subscription"], SUB);
    assert_eq!(entries[3]["status"], 404);
    let t = entries[0]["time"].as_str().unwrap();
    assert!(t.ends_with('Z') && t.contains('.') && t.len() == 24, "{t}");

    let counts = sim.admin("GET", "/_admin/counts", None).await;
    assert_eq!(counts.body[format!("GET /subscriptions/{SUB}/resourcegroups/rg1")], 2);
    assert_eq!(counts.body[format!("PUT /subscriptions/{SUB}/resourcegroups/rg1")], 1);

    sim.admin("POST", "/_admin/reset-log", None).await;
    assert_eq!(sim.admin("GET", "/_admin/requests", None).await.body.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn throttling_budget_counts_down_and_runs_out() {
    let sim = Sim::start().await;
    let path = format!("/subscriptions/{SUB}/resourcegroups/rg1");
    let first = sim.arm("GET", &path, None).await;
    let r1: u64 = first.header("x-ms-ratelimit-remaining-subscription-reads").unwrap().parse().unwrap();
    assert!(r1 >= 248, "{r1}");
    // Writes have their own bucket (200 burst, 10/s): exhaust it.
    let mut throttled = None;
    for _ in 0..260 {
        let r = sim.arm("PUT", &path, Some(json!({"location": "westeurope"}))).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(r);
            break;
        }
    }
    let t = throttled.expect("writes were throttled");
    assert_eq!(t.code(), "SubscriptionRequestsThrottled");
    assert!(t.header("retry-after").is_some());
    // Another subscription is unaffected.
    let other = sim
        .arm("PUT", &format!("/subscriptions/{SUB2}/resourcegroups/rg1"), Some(json!({"location": "westeurope"})))
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
}
