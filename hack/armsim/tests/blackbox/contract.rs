//! Every curated kind's write contract, from the REST specs (the table in the README): the
//! status, body and async-operation headers of create, update and delete.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// What one answer must look like.
#[derive(Clone, Copy, Debug)]
struct Exp {
    status: u16,
    body: bool,
    async_operation: bool,
    location: bool,
    retry_after: bool,
}

const fn sync(status: u16, body: bool) -> Exp {
    Exp { status, body, async_operation: false, location: false, retry_after: false }
}

const fn lro(status: u16, body: bool, async_operation: bool, location: bool, retry_after: bool) -> Exp {
    Exp { status, body, async_operation, location, retry_after }
}

fn check(r: &Resp, e: Exp, what: &str) {
    assert_eq!(r.status.as_u16(), e.status, "{what}: {:?}", r.body);
    assert_eq!(!r.body.is_null(), e.body, "{what} body: {:?}", r.body);
    assert_eq!(r.header("azure-asyncoperation").is_some(), e.async_operation, "{what} Azure-AsyncOperation");
    assert_eq!(r.header("location").is_some(), e.location, "{what} Location");
    assert_eq!(r.header("retry-after").is_some(), e.retry_after, "{what} Retry-After");
}

struct Case {
    path: String,
    body: Value,
    create: Exp,
    update: Exp,
    delete: Exp,
}

#[tokio::test]
async fn every_kind_answers_as_its_spec_declares() {
    let sim =
        Sim::start_with(armsim::Config { operation_time: Duration::from_millis(100), ..Default::default() }).await;
    sim.put_group(SUB, "rg1").await;
    let top = |tail: &str| rid(SUB, "rg1", tail);
    let loc = json!({"location": "westeurope"});
    let cases = vec![
        Case {
            path: top("Microsoft.Storage/storageAccounts/acct1"),
            body: loc.clone(),
            create: lro(202, false, false, true, true),
            update: sync(200, true),
            delete: sync(200, false),
        },
        Case {
            path: top("Microsoft.Storage/storageAccounts/acct2/blobServices/default/containers/raw"),
            body: json!({}),
            create: sync(201, true),
            update: sync(200, true),
            delete: sync(200, false),
        },
        Case {
            path: top("Microsoft.Storage/storageAccounts/acct2/queueServices/default/queues/jobs"),
            body: json!({}),
            create: sync(200, true),
            update: sync(200, true),
            delete: sync(204, false),
        },
        Case {
            path: top("Microsoft.DBforPostgreSQL/flexibleServers/pg-one"),
            body: loc.clone(),
            create: lro(202, false, true, true, true),
            update: lro(202, false, true, true, true),
            delete: lro(202, false, true, true, true),
        },
        Case {
            path: top("Microsoft.DBforPostgreSQL/flexibleServers/pg-two/databases/app"),
            body: json!({}),
            create: lro(202, false, true, true, true),
            update: lro(202, false, true, true, true),
            delete: lro(202, false, true, true, true),
        },
        Case {
            path: top("Microsoft.Cache/redis/cache1"),
            body: loc.clone(),
            create: lro(201, true, true, true, true),
            update: lro(200, true, false, false, false),
            delete: lro(202, false, false, true, true),
        },
        Case {
            path: top("Microsoft.EventHub/namespaces/ehns-one"),
            body: loc.clone(),
            create: lro(201, true, true, false, true),
            update: lro(200, true, false, false, false),
            delete: lro(202, false, true, true, true),
        },
        Case {
            path: top("Microsoft.EventHub/namespaces/ehns-two/eventhubs/hub"),
            body: json!({}),
            create: sync(200, true),
            update: sync(200, true),
            delete: sync(200, false),
        },
        Case {
            path: top("Microsoft.KeyVault/vaults/kv-one"),
            body: loc.clone(),
            create: lro(201, true, false, true, true),
            update: sync(200, true),
            delete: sync(200, false),
        },
        Case {
            path: top("Microsoft.CognitiveServices/accounts/ai-one"),
            body: json!({"location": "westeurope", "kind": "OpenAI", "sku": {"name": "S0"}}),
            create: lro(201, true, false, false, true),
            update: lro(200, true, false, false, false),
            delete: lro(202, false, false, true, true),
        },
        Case {
            path: format!("/subscriptions/{SUB}/resourcegroups/rg-contract"),
            body: loc.clone(),
            create: sync(201, true),
            update: sync(200, true),
            delete: lro(202, false, false, true, true),
        },
    ];
    // Parents of the child cases.
    for parent in [
        top("Microsoft.Storage/storageAccounts/acct2"),
        top("Microsoft.DBforPostgreSQL/flexibleServers/pg-two"),
        top("Microsoft.EventHub/namespaces/ehns-two"),
    ] {
        assert!(sim.arm("PUT", &parent, Some(loc.clone())).await.status.is_success());
    }
    let settle = || tokio::time::sleep(Duration::from_millis(250));
    settle().await;
    for case in cases {
        let p = &case.path;
        check(&sim.arm("PUT", p, Some(case.body.clone())).await, case.create, &format!("create {p}"));
        settle().await;
        check(&sim.arm("PUT", p, Some(case.body.clone())).await, case.update, &format!("update {p}"));
        settle().await;
        check(&sim.arm("DELETE", p, None).await, case.delete, &format!("delete {p}"));
        settle().await;
        let gone = sim.arm("GET", p, None).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND, "{p} after delete: {:?}", gone.body);
        if !p.contains("resourcegroups/rg-contract") {
            check(&sim.arm("DELETE", p, None).await, sync(204, false), &format!("delete missing {p}"));
        }
    }
}
