//! Storage backed by a real Azurite. Skipped unless ARMSIM_AZURITE_BLOB and
//! ARMSIM_AZURITE_QUEUE are set (`eval "$(hack/azurite/up.sh DIR)"`).

use crate::common::*;
use armsim::azurite::{Azurite, Service};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn containers_and_queues_are_created_in_azurite() {
    let (Ok(blob), Ok(queue)) = (std::env::var("ARMSIM_AZURITE_BLOB"), std::env::var("ARMSIM_AZURITE_QUEUE")) else {
        eprintln!("skipped: ARMSIM_AZURITE_BLOB / ARMSIM_AZURITE_QUEUE not set");
        return;
    };
    let sim = Sim::start_with(armsim::Config {
        operation_time: Duration::from_millis(200),
        azurite_blob: Some(blob.clone()),
        azurite_queue: Some(queue.clone()),
        ..Default::default()
    })
    .await;
    let probe = Azurite::new(&blob, &queue, None).unwrap();
    let suffix = std::process::id();
    let container = format!("raw-{suffix}");
    let qname = format!("jobs-{suffix}");

    sim.put_group(SUB, "rg1").await;
    let acct = rid(SUB, "rg1", &format!("Microsoft.Storage/storageAccounts/acct{suffix}"));
    let c = sim.arm("PUT", &acct, Some(json!({"location": "westeurope", "kind": "StorageV2"}))).await;
    assert_eq!(c.status, StatusCode::ACCEPTED);
    let c = sim.wait_location(c.header("location").unwrap()).await;
    assert_eq!(c.body["properties"]["primaryEndpoints"]["blob"], format!("{}/", blob.trim_end_matches('/')));
    assert_eq!(c.body["properties"]["primaryEndpoints"]["queue"], format!("{}/", queue.trim_end_matches('/')));
    let keys = sim.arm("POST", &format!("{acct}/listKeys"), None).await;
    assert_eq!(keys.body["keys"][0]["value"], armsim::azurite::ACCOUNT_KEY);
    let regen = sim.arm("POST", &format!("{acct}/regenerateKey"), Some(json!({"keyName": "key1"}))).await;
    assert_eq!(regen.status, StatusCode::CONFLICT);

    assert!(!probe.exists(Service::Blob, &container).await.unwrap());
    let put = sim.arm("PUT", &format!("{acct}/blobServices/default/containers/{container}"), Some(json!({}))).await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    assert!(probe.exists(Service::Blob, &container).await.unwrap(), "container exists in Azurite");
    let q = sim.arm("PUT", &format!("{acct}/queueServices/default/queues/{qname}"), Some(json!({}))).await;
    assert_eq!(q.status, StatusCode::OK, "{:?}", q.body);
    assert!(probe.exists(Service::Queue, &qname).await.unwrap(), "queue exists in Azurite");

    let del = sim.arm("DELETE", &format!("{acct}/blobServices/default/containers/{container}"), None).await;
    assert_eq!(del.status, StatusCode::OK);
    assert!(!probe.exists(Service::Blob, &container).await.unwrap(), "container deleted from Azurite");

    // Deleting the account (synchronous, like the real one) removes its queues from Azurite.
    let d = sim.arm("DELETE", &acct, None).await;
    assert_eq!(d.status, StatusCode::OK);
    assert!(!probe.exists(Service::Queue, &qname).await.unwrap(), "queue deleted with its account");
}
