//! Resource groups, resources, long-running operations, parents, names, keys.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn storage(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/{name}")
}

#[tokio::test]
async fn api_version_is_required() {
    let sim = Sim::start().await;
    let r = sim.arm("GET", &format!("/subscriptions/{SUB}/resourcegroups/rg1?"), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "MissingApiVersionParameter");
    assert!(r.header("x-ms-request-id").is_some());
    assert!(r.header("x-ms-correlation-request-id").is_some());
}

#[tokio::test]
async fn resource_group_create_get_delete() {
    let sim = Sim::start().await;
    let path = format!("/subscriptions/{SUB}/resourcegroups/rg1");
    let created = sim.arm("PUT", &path, Some(json!({"location": "South East Asia", "tags": {"team": "a"}}))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["id"], format!("/subscriptions/{SUB}/resourceGroups/rg1"));
    assert_eq!(created.body["location"], "southeastasia");
    assert_eq!(created.body["type"], "Microsoft.Resources/resourceGroups");
    assert_eq!(created.body["properties"]["provisioningState"], "Succeeded");
    assert!(created.header("x-ms-ratelimit-remaining-subscription-writes").is_some());

    let again = sim.arm("PUT", &path, Some(json!({"location": "southeastasia", "tags": {"team": "b"}}))).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["tags"]["team"], "b");

    // Path segments are case-insensitive.
    let got = sim.arm("GET", &format!("/SUBSCRIPTIONS/{SUB}/resourceGroups/RG1"), None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["name"], "rg1");
    assert!(got.header("x-ms-ratelimit-remaining-subscription-reads").is_some());

    // A resource inside goes away with the group.
    let sa = sim
        .arm(
            "PUT",
            &storage("acct1"),
            Some(json!({"location": "southeastasia", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"})),
        )
        .await;
    assert_eq!(sa.status, StatusCode::ACCEPTED);
    let listed = sim.arm("GET", &format!("{path}/resources"), None).await;
    assert_eq!(listed.body["value"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["value"][0]["type"], "Microsoft.Storage/storageAccounts");

    let del = sim.arm("DELETE", &path, None).await;
    assert_eq!(del.status, StatusCode::ACCEPTED);
    let location = del.header("location").expect("Location").to_string();
    assert_eq!(del.header("retry-after"), Some("1"));
    let during = sim.arm("GET", &path, None).await;
    assert_eq!(during.body["properties"]["provisioningState"], "Deleting");
    let done = sim.wait_location(&location).await;
    assert_eq!(done.status, StatusCode::OK);
    let gone = sim.arm("GET", &path, None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "ResourceGroupNotFound");
    assert_eq!(sim.arm("GET", &storage("acct1"), None).await.code(), "ResourceGroupNotFound");
}

#[tokio::test]
async fn storage_create_is_202_location_then_the_account() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    let body = json!({"location": "West Europe", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2",
                      "properties": {"minimumTlsVersion": "TLS1_2"}, "tags": {"a": "1"}});
    // "StorageAccounts_Create": 202 + Location + Retry-After, no body, final-state-via location.
    let created = sim.arm("PUT", &storage("acct1"), Some(body.clone())).await;
    assert_eq!(created.status, StatusCode::ACCEPTED);
    assert!(created.body.is_null(), "{:?}", created.body);
    assert!(created.header("azure-asyncoperation").is_none());
    assert_eq!(created.header("retry-after"), Some("1"));
    let location = created.header("location").expect("Location").to_string();
    assert!(
        location.contains(&format!(
            "/subscriptions/{SUB}/providers/Microsoft.Storage/locations/westeurope/operationResults/"
        )),
        "{location}"
    );
    assert!(location.contains("api-version="));

    // Meanwhile the account is visible, Creating.
    let during = sim.arm("GET", &storage("acct1"), None).await;
    assert_eq!(during.body["properties"]["provisioningState"], "Creating");
    assert_eq!(during.body["properties"]["minimumTlsVersion"], "TLS1_2");
    assert_eq!(during.body["properties"]["primaryEndpoints"]["blob"], "https://acct1.blob.core.windows.net/");
    assert_eq!(sim.arm("GET", &location, None).await.status, StatusCode::ACCEPTED);

    // The Location's final answer is 200 with the account.
    let done = sim.wait_location(&location).await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["id"], storage("acct1"));
    assert_eq!(done.body["name"], "acct1");
    assert_eq!(done.body["type"], "Microsoft.Storage/storageAccounts");
    assert_eq!(done.body["location"], "westeurope");
    assert_eq!(done.body["sku"]["name"], "Standard_LRS");
    assert_eq!(done.body["properties"]["provisioningState"], "Succeeded");

    // Same PUT again (path casing differs): 200 with the account, synchronous.
    let updated = sim.arm("PUT", &storage("acct1").replace("resourceGroups", "RESOURCEGROUPS"), Some(body)).await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body["id"], storage("acct1"));
    assert_eq!(updated.body["properties"]["provisioningState"], "Succeeded");
    assert!(updated.header("location").is_none());
}

#[tokio::test]
async fn redis_create_follows_location_and_updates_poll_the_resource() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    let path = format!("/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Cache/redis/cache1");
    let body =
        json!({"location": "westeurope", "properties": {"sku": {"name": "Basic", "family": "C", "capacity": 0}}});
    // "Redis_Create": 201 + Location with the cache (Creating), final-state-via location.
    let c = sim.arm("PUT", &path, Some(body.clone())).await;
    assert_eq!(c.status, StatusCode::CREATED);
    assert_eq!(c.body["type"], "Microsoft.Cache/Redis");
    assert_eq!(c.body["properties"]["provisioningState"], "Creating");
    assert_eq!(c.body["properties"]["hostName"], "cache1.redis.cache.windows.net");
    assert_eq!(c.body["properties"]["sslPort"], 6380);
    assert_eq!(c.body["properties"]["port"], 6379);
    let done = sim.wait_location(c.header("location").unwrap()).await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["properties"]["provisioningState"], "Succeeded");
    // An update answers 200 with the cache Updating and no operation headers: clients poll it.
    let u = sim.arm("PUT", &path, Some(body)).await;
    assert_eq!(u.status, StatusCode::OK);
    assert_eq!(u.body["properties"]["provisioningState"], "Updating");
    assert!(u.header("location").is_none() && u.header("azure-asyncoperation").is_none());
    sim.wait_field(&path, "/properties/provisioningState", "Succeeded").await;
}

#[tokio::test]
async fn postgres_is_202_with_both_monitors_and_the_password_is_write_only() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    let path =
        format!("/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-one");
    let body = json!({"location": "westeurope", "sku": {"name": "Standard_B1ms", "tier": "Burstable"},
                      "properties": {"administratorLogin": "citystack", "administratorLoginPassword": "hunter2", "version": "16"}});
    // "Servers_CreateOrUpdate": 202 + Azure-AsyncOperation + Location + Retry-After, no body.
    let c = sim.arm("PUT", &path, Some(body)).await;
    assert_eq!(c.status, StatusCode::ACCEPTED);
    assert!(c.body.is_null());
    assert!(c.header("location").is_some() && c.header("retry-after").is_some());
    let g = sim.arm("GET", &path, None).await;
    assert_eq!(g.body["properties"]["state"], "Provisioning");
    assert_eq!(g.body["properties"]["administratorLogin"], "citystack");
    assert_eq!(g.body["properties"]["fullyQualifiedDomainName"], "pg-one.postgres.database.azure.com");
    assert!(!g.body.to_string().contains("hunter2"));
    assert!(g.body["properties"].get("administratorLoginPassword").is_none());
    let status = sim.wait_status(c.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(status.body["status"], "Succeeded");
    let g = sim.arm("GET", &path, None).await;
    assert_eq!(g.body["properties"]["state"], "Ready");
    assert!(!g.body.to_string().contains("hunter2"));

    // "Databases_Create" is long-running too; "Databases_Delete" 202 then gone.
    let db_path = format!("{path}/databases/app");
    let db = sim.arm("PUT", &db_path, Some(json!({"properties": {"charset": "UTF8"}}))).await;
    assert_eq!(db.status, StatusCode::ACCEPTED);
    assert!(db.header("azure-asyncoperation").is_some());
    sim.wait_status(db.header("azure-asyncoperation").unwrap()).await;
    let got = sim.arm("GET", &db_path, None).await;
    assert_eq!(got.body["type"], "Microsoft.DBforPostgreSQL/flexibleServers/databases");
    assert_eq!(got.body["name"], "app");
    let d = sim.arm("DELETE", &db_path, None).await;
    assert_eq!(d.status, StatusCode::ACCEPTED);
    assert_eq!(sim.wait_location(d.header("location").unwrap()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(sim.arm("GET", &db_path, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(sim.arm("DELETE", &db_path, None).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn missing_group_parent_and_resource_are_404s() {
    let sim = Sim::start().await;
    let r = sim.arm("PUT", &storage("acct1"), Some(json!({"location": "westeurope"}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "ResourceGroupNotFound");

    sim.put_group(SUB, "rg1").await;
    let c =
        sim.arm("PUT", &format!("{}/blobServices/default/containers/raw", storage("nosuch")), Some(json!({}))).await;
    assert_eq!(c.status, StatusCode::NOT_FOUND);
    assert_eq!(c.code(), "ParentResourceNotFound");

    let g = sim.arm("GET", &storage("nosuch"), None).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.code(), "ResourceNotFound");
    assert!(g.body["error"]["message"].as_str().unwrap().contains("nosuch"));

    let d = sim.arm("DELETE", &storage("nosuch"), None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);

    let no_loc = sim.arm("PUT", &storage("acct2"), Some(json!({"sku": {"name": "Standard_LRS"}}))).await;
    assert_eq!(no_loc.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_loc.code(), "LocationRequired");

    let bad_name = sim.arm("PUT", &storage("Not_Valid"), Some(json!({"location": "westeurope"}))).await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_name.code(), "AccountNameInvalid");
}

#[tokio::test]
async fn storage_names_are_global() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    sim.put_group(SUB2, "rg9").await;
    sim.put_group(SUB, "rg2").await;
    let body = json!({"location": "westeurope", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"});
    assert_eq!(sim.arm("PUT", &storage("shared1"), Some(body.clone())).await.status, StatusCode::ACCEPTED);
    let other_sub =
        sim.arm("PUT", &rid(SUB2, "rg9", "Microsoft.Storage/storageAccounts/shared1"), Some(body.clone())).await;
    assert_eq!(other_sub.status, StatusCode::CONFLICT);
    assert_eq!(other_sub.code(), "StorageAccountAlreadyTaken");
    let other_rg = sim.arm("PUT", &rid(SUB, "rg2", "Microsoft.Storage/storageAccounts/shared1"), Some(body)).await;
    assert_eq!(other_rg.status, StatusCode::CONFLICT);

    let vault =
        json!({"location": "westeurope", "properties": {"tenantId": "t", "sku": {"family": "A", "name": "standard"}}});
    assert_eq!(
        sim.arm("PUT", &rid(SUB, "rg1", "Microsoft.KeyVault/vaults/kv-one"), Some(vault.clone())).await.status,
        StatusCode::CREATED
    );
    let kv2 = sim.arm("PUT", &rid(SUB2, "rg9", "Microsoft.KeyVault/vaults/kv-one"), Some(vault)).await;
    assert_eq!(kv2.status, StatusCode::CONFLICT);
    assert_eq!(kv2.code(), "VaultAlreadyExists");
}

#[tokio::test]
async fn deletes_follow_each_kinds_contract() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    // Redis: 202 + Location; the cache shows Deleting; the Location then answers 204; 404.
    let redis = rid(SUB, "rg1", "Microsoft.Cache/Redis/cache1");
    let c = sim.arm("PUT", &redis, Some(json!({"location": "westeurope"}))).await;
    sim.wait_location(c.header("location").unwrap()).await;
    let d = sim.arm("DELETE", &redis, None).await;
    assert_eq!(d.status, StatusCode::ACCEPTED);
    assert!(d.header("azure-asyncoperation").is_none());
    let loc = d.header("location").unwrap().to_string();
    assert_eq!(sim.arm("GET", &loc, None).await.status, StatusCode::ACCEPTED);
    let during = sim.arm("GET", &redis, None).await;
    assert_eq!(during.body["properties"]["provisioningState"], "Deleting");
    let done = sim.wait_location(&loc).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT);
    assert_eq!(sim.arm("GET", &redis, None).await.status, StatusCode::NOT_FOUND);

    // Storage: "StorageAccounts_Delete" is synchronous 200 (204 when missing); the name is free.
    let c = sim.arm("PUT", &storage("acct1"), Some(json!({"location": "westeurope"}))).await;
    sim.wait_location(c.header("location").unwrap()).await;
    let d = sim.arm("DELETE", &storage("acct1"), None).await;
    assert_eq!(d.status, StatusCode::OK);
    assert!(d.header("location").is_none());
    assert_eq!(sim.arm("GET", &storage("acct1"), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(sim.arm("DELETE", &storage("acct1"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        sim.arm("PUT", &storage("acct1"), Some(json!({"location": "westeurope"}))).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn child_resources_and_listing() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    sim.arm("PUT", &storage("acct1"), Some(json!({"location": "westeurope"}))).await;
    let containers = format!("{}/blobServices/default/containers", storage("acct1"));
    let raw = sim.arm("PUT", &format!("{containers}/raw"), Some(json!({"properties": {}}))).await;
    assert_eq!(raw.status, StatusCode::CREATED);
    assert_eq!(raw.body["type"], "Microsoft.Storage/storageAccounts/blobServices/containers");
    assert_eq!(raw.body["name"], "raw");
    assert_eq!(raw.body["properties"]["publicAccess"], "None");
    sim.arm("PUT", &format!("{containers}/processed"), Some(json!({}))).await;
    let list = sim.arm("GET", &containers, None).await;
    assert_eq!(list.body["value"].as_array().unwrap().len(), 2);
    let svc = sim.arm("GET", &format!("{}/blobServices/default", storage("acct1")), None).await;
    assert_eq!(svc.status, StatusCode::OK);
    assert_eq!(sim.arm("DELETE", &format!("{containers}/raw"), None).await.status, StatusCode::OK);
    assert_eq!(sim.arm("GET", &format!("{containers}/raw"), None).await.status, StatusCode::NOT_FOUND);

    // "Queue_Create" answers 200 (also when new); "Queue_Delete" 204.
    let queue_path = format!("{}/queueServices/default/queues/jobs", storage("acct1"));
    let queue = sim.arm("PUT", &queue_path, Some(json!({}))).await;
    assert_eq!(queue.status, StatusCode::OK);
    assert_eq!(queue.body["type"], "Microsoft.Storage/storageAccounts/queueServices/queues");
    sim.arm("PUT", &format!("{}/queueServices/default/queues/other", storage("acct1")), Some(json!({}))).await;
    assert_eq!(
        sim.arm("DELETE", &format!("{}/queueServices/default/queues/other", storage("acct1")), None).await.status,
        StatusCode::NO_CONTENT
    );

    // Only top-level resources are listed in the group.
    let res = sim.arm("GET", &format!("/subscriptions/{SUB}/resourceGroups/rg1/resources"), None).await;
    let ids: Vec<&str> = res.body["value"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![storage("acct1").as_str()]);
}

#[tokio::test]
async fn generic_types_are_echoed() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    let path = rid(SUB, "rg1", "Microsoft.ServiceBus/namespaces/bus1");
    let c = sim.arm("PUT", &path, Some(json!({"location": "North Europe", "sku": {"name": "Standard"}, "properties": {"zoneRedundant": false}}))).await;
    assert_eq!(c.status, StatusCode::CREATED);
    assert_eq!(c.body["type"], "Microsoft.ServiceBus/namespaces");
    assert_eq!(c.body["location"], "northeurope");
    assert_eq!(c.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(c.body["properties"]["zoneRedundant"], false);
    assert!(c.header("azure-asyncoperation").is_none());
    let g = sim.arm("GET", &path, None).await;
    assert_eq!(g.body["sku"]["name"], "Standard");
}

/// PUT that must succeed (200, 201 or 202); answers the resource once its creation is done.
async fn created(sim: &Sim, path: &str, body: Value) -> Resp {
    let r = sim.arm("PUT", path, Some(body)).await;
    assert!(r.status.is_success(), "{} {:?}", r.status, r.body);
    if let Some(url) = r.header("location") {
        sim.wait_location(url).await;
    }
    let got = sim.arm("GET", path, None).await;
    assert_eq!(got.status, StatusCode::OK);
    if r.body.is_null() { got } else { r }
}

#[tokio::test]
async fn list_keys_shapes_and_regeneration() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    let loc = json!({"location": "westeurope"});

    // Storage: {keys:[{keyName,value,permissions}]}.
    created(&sim, &storage("acct1"), loc.clone()).await;
    let k = sim.arm("POST", &format!("{}/listKeys", storage("acct1")), None).await;
    assert_eq!(k.status, StatusCode::OK);
    assert_eq!(k.body["keys"][0]["keyName"], "key1");
    assert_eq!(k.body["keys"][1]["keyName"], "key2");
    assert_eq!(k.body["keys"][0]["permissions"], "FULL");
    let key1 = k.body["keys"][0]["value"].as_str().unwrap().to_string();
    assert_eq!(key1.len(), 88);
    let regen = sim.arm("POST", &format!("{}/regenerateKey", storage("acct1")), Some(json!({"keyName": "key1"}))).await;
    assert_eq!(regen.status, StatusCode::OK);
    assert_ne!(regen.body["keys"][0]["value"], key1.as_str());
    assert_eq!(regen.body["keys"][1]["value"], k.body["keys"][1]["value"]);

    // Redis: {primaryKey, secondaryKey}; regenerateKey {keyType}.
    let redis = rid(SUB, "rg1", "Microsoft.Cache/Redis/cache1");
    created(&sim, &redis, loc.clone()).await;
    let rk = sim.arm("POST", &format!("{redis}/listKeys"), None).await;
    assert!(rk.body["primaryKey"].is_string() && rk.body["secondaryKey"].is_string());
    let rr = sim.arm("POST", &format!("{redis}/regenerateKey"), Some(json!({"keyType": "Secondary"}))).await;
    assert_eq!(rr.body["primaryKey"], rk.body["primaryKey"]);
    assert_ne!(rr.body["secondaryKey"], rk.body["secondaryKey"]);

    // Event Hubs: the namespace comes with RootManageSharedAccessKey.
    let ns = rid(SUB, "rg1", "Microsoft.EventHub/namespaces/ehns-one");
    let n = created(&sim, &ns, loc.clone()).await;
    assert_eq!(n.body["properties"]["provisioningState"], "Created");
    assert_eq!(n.body["properties"]["serviceBusEndpoint"], "https://ehns-one.servicebus.windows.net:443/");
    let hub = created(&sim, &format!("{ns}/eventhubs/vehicles"), json!({"properties": {"partitionCount": 2}})).await;
    assert_eq!(hub.body["properties"]["partitionIds"], json!(["0", "1"]));
    let ek = sim.arm("POST", &format!("{ns}/authorizationRules/RootManageSharedAccessKey/listKeys"), None).await;
    assert_eq!(ek.status, StatusCode::OK);
    assert_eq!(ek.body["keyName"], "RootManageSharedAccessKey");
    let cs = ek.body["primaryConnectionString"].as_str().unwrap();
    assert!(cs.starts_with(
        "Endpoint=sb://ehns-one.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey="
    ));
    assert!(
        ek.body["secondaryConnectionString"].is_string()
            && ek.body["primaryKey"].is_string()
            && ek.body["secondaryKey"].is_string()
    );
    let er = sim
        .arm(
            "POST",
            &format!("{ns}/authorizationRules/RootManageSharedAccessKey/regenerateKeys"),
            Some(json!({"keyType": "PrimaryKey"})),
        )
        .await;
    assert_ne!(er.body["primaryKey"], ek.body["primaryKey"]);
    // A hub-level rule's connection string names the hub.
    created(
        &sim,
        &format!("{ns}/eventhubs/vehicles/authorizationRules/send"),
        json!({"properties": {"rights": ["Send"]}}),
    )
    .await;
    let hk = sim.arm("POST", &format!("{ns}/eventhubs/vehicles/authorizationRules/send/listKeys"), None).await;
    assert!(hk.body["primaryConnectionString"].as_str().unwrap().ends_with(";EntityPath=vehicles"));

    // Cognitive Services: {key1, key2}; regenerateKey {keyName: Key1|Key2}.
    let cog = rid(SUB, "rg1", "Microsoft.CognitiveServices/accounts/ai-one");
    let c = created(&sim, &cog, json!({"location": "westeurope", "kind": "OpenAI", "sku": {"name": "S0"}, "properties": {"customSubDomainName": "ai-one"}})).await;
    assert_eq!(c.body["properties"]["endpoint"], "https://ai-one.openai.azure.com/");
    let ck = sim.arm("POST", &format!("{cog}/listKeys"), None).await;
    assert!(ck.body["key1"].is_string() && ck.body["key2"].is_string());
    let cr = sim.arm("POST", &format!("{cog}/regenerateKey"), Some(json!({"keyName": "Key2"}))).await;
    assert_eq!(cr.body["key1"], ck.body["key1"]);
    assert_ne!(cr.body["key2"], ck.body["key2"]);

    // Key Vault: vaultUri.
    let kv = created(&sim, &rid(SUB, "rg1", "Microsoft.KeyVault/vaults/kv-one"), loc.clone()).await;
    assert_eq!(kv.body["properties"]["vaultUri"], "https://kv-one.vault.azure.net/");
    assert_eq!(kv.body["properties"]["provisioningState"], "RegisteringDns");

    // Out-of-band rotation through the admin API.
    let before = sim.arm("POST", &format!("{redis}/listKeys"), None).await;
    let a = sim.admin("POST", "/_admin/regenerate", Some(json!({"resourceId": redis}))).await;
    assert_eq!(a.status, StatusCode::OK);
    let after = sim.arm("POST", &format!("{redis}/listKeys"), None).await;
    assert_ne!(after.body["primaryKey"], before.body["primaryKey"]);
    assert_ne!(after.body["secondaryKey"], before.body["secondaryKey"]);
}

#[tokio::test]
async fn resource_list_is_paged_with_next_link() {
    let sim = Sim::start().await;
    sim.put_group(SUB, "rg1").await;
    for i in 0..5 {
        let r = sim
            .arm(
                "PUT",
                &rid(SUB, "rg1", &format!("Microsoft.Web/sites/site{i}")),
                Some(json!({"location": "westeurope"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let list = format!("/subscriptions/{SUB}/resourceGroups/rg1/resources");
    // The default page (1000) holds everything: no nextLink.
    let all = sim.arm("GET", &list, None).await;
    assert_eq!(all.body["value"].as_array().unwrap().len(), 5);
    assert!(all.body.get("nextLink").is_none());

    let s = sim.admin("PUT", "/_admin/settings", Some(json!({"pageSize": 2}))).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.body["pageSize"], 2);
    assert_eq!(sim.admin("GET", "/_admin/settings", None).await.body["pageSize"], 2);
    assert_eq!(
        sim.admin("PUT", "/_admin/settings", Some(json!({"pageSize": 0}))).await.status,
        StatusCode::BAD_REQUEST
    );

    // Pages of 2, 2, 1; each nextLink is absolute, keeps the api-version and has a $skiptoken.
    let mut names = Vec::new();
    let mut page = sim.arm("GET", &list, None).await;
    let mut pages = 1;
    loop {
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        for v in page.body["value"].as_array().unwrap() {
            names.push(v["name"].as_str().unwrap().to_string());
        }
        let Some(next) = page.body["nextLink"].as_str().map(str::to_string) else { break };
        assert!(next.starts_with(&sim.server.endpoint), "{next}");
        assert!(next.contains(&format!("api-version={API}")) && next.contains("%24skiptoken="), "{next}");
        page = sim.arm("GET", &next, None).await;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(names, vec!["site0", "site1", "site2", "site3", "site4"]);

    // $top makes pages smaller still; a broken $skiptoken or $top is a 400.
    let top = sim.arm("GET", &format!("{list}?api-version={API}&%24top=1"), None).await;
    assert_eq!(top.body["value"].as_array().unwrap().len(), 1);
    assert!(top.body["nextLink"].as_str().unwrap().contains("%24top=1"));
    let bad = sim.arm("GET", &format!("{list}?api-version={API}&%24skiptoken=%21%21"), None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "InvalidSkipToken");
    assert_eq!(
        sim.arm("GET", &format!("{list}?api-version={API}&%24top=0"), None).await.status,
        StatusCode::BAD_REQUEST
    );
}
