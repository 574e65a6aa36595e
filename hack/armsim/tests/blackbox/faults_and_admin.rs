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
    assert_eq!(sim.arm("PUT", &storage("acct1"), Some(body)).await.status, StatusCode::ACCEPTED);
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
    // Storage creation is followed through Location: a failed operation answers its error there.
    let c = sim.arm("PUT", &storage("acct1"), Some(json!({"location": "westeurope"}))).await;
    assert_eq!(c.status, StatusCode::ACCEPTED);
    let loc = sim.wait_location(c.header("location").unwrap()).await;
    assert_eq!(loc.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(loc.code(), "InternalServerError");
    assert_eq!(loc.body["error"]["message"], "disk on fire");
    let g = sim.arm("GET", &storage("acct1"), None).await;
    assert_eq!(g.body["properties"]["provisioningState"], "Failed");

    // Retrying the PUT starts creation again (202 again), and this time it succeeds.
    let retry = sim.arm("PUT", &storage("acct1"), Some(json!({"location": "westeurope"}))).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED);
    assert_eq!(sim.arm("GET", &storage("acct1"), None).await.body["properties"]["provisioningState"], "Creating");
    let ok = sim.wait_location(retry.header("location").unwrap()).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["properties"]["provisioningState"], "Succeeded");

    // Redis also names the status monitor: it reports Failed with the error.
    let redis = format!("/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Cache/redis/cache1");
    sim.admin("POST", "/_admin/faults", Some(json!({"method": "PUT", "pathContains": "redis/cache1", "operation": "Failed", "code": "BadRequest", "message": "no capacity"}))).await;
    let c = sim.arm("PUT", &redis, Some(json!({"location": "westeurope"}))).await;
    assert_eq!(c.status, StatusCode::CREATED);
    let status = sim.wait_status(c.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(status.body["status"], "Failed");
    assert_eq!(status.body["error"]["code"], "BadRequest");
    assert_eq!(status.body["error"]["message"], "no capacity");
    assert_eq!(sim.arm("GET", c.header("location").unwrap(), None).await.status, StatusCode::BAD_REQUEST);
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
    // Deletes have a bucket of their own (200 burst, 10/s), untouched by the writes.
    let delete = sim.arm("DELETE", &path, None).await;
    assert_ne!(delete.status, StatusCode::TOO_MANY_REQUESTS);
    let left: u64 = delete.header("x-ms-ratelimit-remaining-subscription-deletes").unwrap().parse().unwrap();
    assert!(left >= 198, "{left}");
    // Another subscription is unaffected.
    let other = sim
        .arm("PUT", &format!("/subscriptions/{SUB2}/resourcegroups/rg1"), Some(json!({"location": "westeurope"})))
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
}

async fn fault(sim: &Sim, rule: serde_json::Value) {
    let r = sim.admin("POST", "/_admin/faults", Some(rule.clone())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{rule}: {:?}", r.body);
}

#[tokio::test]
async fn raw_retry_after_values_on_any_status() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    let group = format!("/subscriptions/{SUB}/resourcegroups/rg1");
    // On a real 200 answer.
    fault(
        &sim,
        json!({"method": "GET", "pathContains": "resourcegroups/rg1", "retryAfterRaw": "18446744073709551615"}),
    )
    .await;
    let r = sim.arm("GET", &group, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("retry-after"), Some("18446744073709551615"));
    assert_eq!(r.body["name"], "rg1");
    // On an injected 429 and 503, and on an injected 202 without a body.
    for (status, value) in [(429, "Wed, 21 Oct 2015 07:28:00 GMT"), (503, "0"), (202, "soon-ish")] {
        fault(
            &sim,
            json!({"method": "GET", "pathContains": "resourcegroups/rg1", "status": status, "retryAfterRaw": value}),
        )
        .await;
        let r = sim.arm_raw("GET", &group, None).await;
        assert_eq!(r.status.as_u16(), status);
        assert_eq!(r.header("retry-after"), Some(value));
    }
    // On the Location poll of a real long-running operation.
    let c = sim.arm("PUT", &storage("acct1"), Some(json!({"location": "westeurope"}))).await;
    fault(&sim, json!({"method": "GET", "pathContains": "operationResults", "retryAfterRaw": "-1"})).await;
    let poll = sim.arm_raw("GET", c.header("location").unwrap(), None).await;
    assert_eq!(poll.status, StatusCode::ACCEPTED);
    assert_eq!(poll.header("retry-after"), Some("-1"));
    // Values that are not header values are refused.
    let bad = sim.admin("POST", "/_admin/faults", Some(json!({"retryAfterRaw": "a\nb"}))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn oversized_non_json_and_misshapen_bodies() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    let c = sim.arm("PUT", &storage("acct1"), Some(json!({"location": "westeurope"}))).await;
    sim.wait_location(c.header("location").unwrap()).await;

    // A 9 MiB answer that is still the account (plus padding).
    let nine_mib: u64 = 9 * 1024 * 1024;
    fault(&sim, json!({"method": "GET", "pathContains": "storageAccounts/acct1", "bodyBytes": nine_mib})).await;
    let big = sim.arm_raw("GET", &storage("acct1"), None).await;
    assert_eq!(big.status, StatusCode::OK);
    assert!(big.body.len() as u64 > nine_mib, "{}", big.body.len());
    let parsed: serde_json::Value = serde_json::from_slice(&big.body).expect("still JSON");
    assert_eq!(parsed["name"], "acct1");
    // Also on a listKeys answer, and on an injected error.
    fault(&sim, json!({"method": "POST", "pathContains": "listKeys", "bodyBytes": 1_000_000})).await;
    assert!(sim.arm_raw("POST", &format!("{}/listKeys", storage("acct1")), None).await.body.len() > 1_000_000);
    fault(&sim, json!({"method": "GET", "pathContains": "acct1", "status": 500, "bodyBytes": 2_000_000})).await;
    let err = sim.arm_raw("GET", &storage("acct1"), None).await;
    assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(err.body.len() > 2_000_000);

    // Not JSON at all, with (or without) a JSON content type.
    fault(&sim, json!({"method": "GET", "pathContains": "acct1", "bodyRaw": "<html>502 Bad Gateway</html>"})).await;
    let html = sim.arm_raw("GET", &storage("acct1"), None).await;
    assert_eq!(html.status, StatusCode::OK);
    assert_eq!(html.body, b"<html>502 Bad Gateway</html>");
    assert!(html.header("content-type").unwrap().starts_with("application/json"));
    fault(
        &sim,
        json!({"method": "GET", "pathContains": "acct1", "bodyRaw": "{\"truncated\": ", "contentType": "text/plain"}),
    )
    .await;
    let cut = sim.arm_raw("GET", &storage("acct1"), None).await;
    assert_eq!(cut.header("content-type"), Some("text/plain"));
    assert!(serde_json::from_slice::<serde_json::Value>(&cut.body).is_err());

    // JSON of the wrong shape: merged over the real answer, or instead of it.
    fault(&sim, json!({"method": "GET", "pathContains": "acct1", "bodyPatch": {"properties": {"provisioningState": 7}, "tags": "not-an-object", "id": null}})).await;
    let odd = sim.arm("GET", &storage("acct1"), None).await;
    assert_eq!(odd.body["properties"]["provisioningState"], 7);
    assert_eq!(odd.body["tags"], "not-an-object");
    assert!(odd.body.get("id").is_none());
    assert_eq!(odd.body["name"], "acct1");
    fault(&sim, json!({"method": "POST", "pathContains": "listKeys", "bodyJson": {"keys": "none"}})).await;
    let keys = sim.arm("POST", &format!("{}/listKeys", storage("acct1")), None).await;
    assert_eq!(keys.body, json!({"keys": "none"}));
    fault(&sim, json!({"method": "GET", "pathContains": "operationStatuses", "bodyJson": [1, 2, 3]})).await;
    let c =
        sim.arm("PUT", &rid(SUB, "rg1", "Microsoft.Cache/redis/cache1"), Some(json!({"location": "westeurope"}))).await;
    assert_eq!(sim.arm("GET", c.header("azure-asyncoperation").unwrap(), None).await.body, json!([1, 2, 3]));

    // Rules that contradict themselves are refused.
    for bad in [
        json!({"bodyRaw": "x", "bodyJson": {}}),
        json!({"status": 700}),
        json!({"status": 500, "operation": "Failed"}),
        json!({"bodyBytes": 1_000_000_000_000u64}),
        json!({"pathContains": "x"}),
        json!({"nonsense": 1}),
    ] {
        assert_eq!(
            sim.admin("POST", "/_admin/faults", Some(bad.clone())).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn operation_urls_on_another_host() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    let pg = rid(SUB, "rg1", "Microsoft.DBforPostgreSQL/flexibleServers/pg-one");
    // Moved: same path and query, another authority.
    fault(
        &sim,
        json!({"method": "PUT", "pathContains": "flexibleServers/pg-one", "operationHost": "attacker.example:8443"}),
    )
    .await;
    let c = sim.arm("PUT", &pg, Some(json!({"location": "westeurope"}))).await;
    assert_eq!(c.status, StatusCode::ACCEPTED);
    let aao = c.header("azure-asyncoperation").unwrap();
    let loc = c.header("location").unwrap();
    assert!(
        aao.starts_with("https://attacker.example:8443/subscriptions/") && aao.contains("/operationStatuses/"),
        "{aao}"
    );
    assert!(loc.starts_with("https://attacker.example:8443/subscriptions/") && loc.contains("api-version="), "{loc}");
    // Set outright, on a delete.
    fault(&sim, json!({"method": "DELETE", "pathContains": "flexibleServers/pg-one", "asyncOperation": "http://169.254.169.254/metadata", "location": "https://evil.example/steal"})).await;
    let d = sim.arm("DELETE", &pg, None).await;
    assert_eq!(d.status, StatusCode::ACCEPTED);
    assert_eq!(d.header("azure-asyncoperation"), Some("http://169.254.169.254/metadata"));
    assert_eq!(d.header("location"), Some("https://evil.example/steal"));
    // The rules are listed with their remaining counts until used up.
    fault(&sim, json!({"method": "GET", "location": "https://evil.example/", "count": 3})).await;
    let listed = sim.admin("GET", "/_admin/faults", None).await;
    assert_eq!(listed.body[0]["location"], "https://evil.example/");
    assert_eq!(listed.body[0]["remaining"], 3);
}
