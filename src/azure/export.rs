//! What a provisioned Azure resource exports: the servicebinding.io Secret data (well-known
//! `type` and `provider`, then kind-specific keys) and the non-secret outputs shown in
//! status. Pure: inputs are the ARM GET response and the list-keys response.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::{AzureKind, ExportSource, GenericSpec};
use crate::azure::kinds;

/// Binding Secret data and non-secret outputs of one resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    /// Secret data (servicebinding.io keys).
    pub data: BTreeMap<String, String>,
    /// Non-secret outputs for status (endpoints, host names).
    pub outputs: BTreeMap<String, String>,
}

/// Extra inputs some kinds need.
#[derive(Clone, Debug, Default)]
pub struct Extras<'a> {
    /// The Azure name.
    pub name: &'a str,
    /// The first database (PostgreSQL) or hub (Event Hubs), if any.
    pub first_child: Option<&'a str>,
    /// The generated administrator password (PostgreSQL).
    pub password: Option<&'a str>,
}

/// The storage account an endpoint URL names (see the StorageAccount export).
fn account_of_endpoint(endpoint: &str) -> Option<String> {
    let rest = endpoint.split_once("://")?.1;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let segment = path.split('/').find(|s| !s.is_empty());
    match segment {
        Some(account) => Some(account.to_owned()),
        None => host
            .split('.')
            .next()
            .filter(|h| !h.is_empty() && host.contains('.') && !host.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_owned),
    }
}

fn at<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// The binding of a curated kind (Generic: see [`generic`]).
pub fn curated(kind: AzureKind, resource: &Value, keys: Option<&Value>, extras: &Extras<'_>) -> Exported {
    let mut out = Exported::default();
    let binding_type = kinds::info(kind).map(|k| k.binding_type).unwrap_or("azure");
    out.data.insert("type".into(), binding_type.into());
    out.data.insert("provider".into(), "azure".into());
    let mut put = |key: &str, value: Option<&str>, secret: bool| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.data.insert(key.into(), v.into());
            if !secret {
                out.outputs.insert(key.into(), v.into());
            }
        }
    };
    match kind {
        AzureKind::StorageAccount => {
            let blob = at(resource, "/properties/primaryEndpoints/blob");
            let queue = at(resource, "/properties/primaryEndpoints/queue");
            let key = keys.and_then(|k| k.pointer("/keys/0/value")).and_then(Value::as_str);
            // The account a client signs with is the one the endpoint names: the first label of
            // `https://<account>.blob.core.windows.net/`, or the first path segment of a
            // path-style endpoint (Azure Stack Hub, emulators).
            let account = blob.and_then(account_of_endpoint).unwrap_or_else(|| extras.name.to_owned());
            let extras = Extras { name: &account, ..extras.clone() };
            put("account-name", Some(extras.name), false);
            put("blob-endpoint", blob, false);
            put("queue-endpoint", queue, false);
            put("account-key", key, true);
            if let (Some(key), Some(blob)) = (key, blob) {
                let protocol = if blob.starts_with("http://") { "http" } else { "https" };
                let mut connection = format!(
                    "DefaultEndpointsProtocol={protocol};AccountName={};AccountKey={key};BlobEndpoint={blob};",
                    extras.name
                );
                if let Some(queue) = queue {
                    connection.push_str(&format!("QueueEndpoint={queue};"));
                }
                put("connection-string", Some(&connection), true);
            }
        }
        AzureKind::PostgreSQLFlexibleServer => {
            put("host", at(resource, "/properties/fullyQualifiedDomainName"), false);
            put("port", Some("5432"), false);
            put("database", Some(extras.first_child.unwrap_or("postgres")), false);
            put("username", at(resource, "/properties/administratorLogin"), false);
            put("password", extras.password, true);
            put("sslmode", Some("require"), false);
        }
        AzureKind::RedisCache => {
            put("host", at(resource, "/properties/hostName"), false);
            let port = resource.pointer("/properties/sslPort").and_then(Value::as_u64).unwrap_or(6380).to_string();
            put("port", Some(&port), false);
            put("password", keys.and_then(|k| at(k, "/primaryKey")), true);
            put("ssl", Some("true"), false);
        }
        AzureKind::EventHubNamespace => {
            let endpoint = at(resource, "/properties/serviceBusEndpoint");
            let host = endpoint.map(|e| {
                e.trim_start_matches("https://")
                    .trim_start_matches("sb://")
                    .split([':', '/'])
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            });
            put("fully-qualified-namespace", host.as_deref(), false);
            put("connection-string", keys.and_then(|k| at(k, "/primaryConnectionString")), true);
            put("hub", extras.first_child, false);
        }
        AzureKind::KeyVault => put("vault-uri", at(resource, "/properties/vaultUri"), false),
        AzureKind::CognitiveServicesAccount => {
            put("endpoint", at(resource, "/properties/endpoint"), false);
            put("key", keys.and_then(|k| at(k, "/key1")), true);
        }
        AzureKind::ResourceGroup | AzureKind::Generic => {}
    }
    out
}

/// The binding of a Generic resource: each export's JSON pointer (RFC 6901) into the GET or
/// list-keys response. Values that are not strings are written as JSON.
///
/// Errors: the exports whose pointer found nothing, by key.
pub fn generic(spec: &GenericSpec, resource: &Value, keys: Option<&Value>) -> Result<Exported, Vec<String>> {
    let mut out = Exported::default();
    out.data.insert("type".into(), "azure".into());
    out.data.insert("provider".into(), "azure".into());
    let mut missing = Vec::new();
    for export in &spec.exports {
        let source = match export.from {
            ExportSource::Resource => Some(resource),
            ExportSource::ListKeys => keys,
        };
        match source.and_then(|s| s.pointer(&export.pointer)) {
            Some(Value::String(s)) => {
                out.data.insert(export.key.clone(), s.clone());
                if export.from == ExportSource::Resource {
                    out.outputs.insert(export.key.clone(), s.clone());
                }
            }
            Some(other) => {
                out.data.insert(export.key.clone(), other.to_string());
            }
            None => missing.push(format!("{} ({})", export.key, export.pointer)),
        }
    }
    if missing.is_empty() { Ok(out) } else { Err(missing) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn storage_binding_has_the_documented_keys() {
        let resource = json!({"properties": {"primaryEndpoints": {"blob": "http://127.0.0.1:1/devstoreaccount1", "queue": "http://127.0.0.1:2/devstoreaccount1"}}});
        let keys = json!({"keys": [{"keyName": "key1", "value": "k1"}, {"keyName": "key2", "value": "k2"}]});
        let out =
            curated(AzureKind::StorageAccount, &resource, Some(&keys), &Extras { name: "acct", ..Default::default() });
        for key in
            ["type", "provider", "account-name", "account-key", "connection-string", "blob-endpoint", "queue-endpoint"]
        {
            assert!(out.data.contains_key(key), "{key} missing: {:?}", out.data.keys());
        }
        assert!(
            out.data["connection-string"]
                .starts_with("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=k1;")
        );
        assert!(!out.outputs.contains_key("account-key"), "secrets stay out of status");
        assert_eq!(out.data["account-name"], "devstoreaccount1", "path-style endpoints name the account");
        let azure = json!({"properties": {"primaryEndpoints": {"blob": "https://cityarchive.blob.core.windows.net/"}}});
        let out = curated(
            AzureKind::StorageAccount,
            &azure,
            Some(&keys),
            &Extras { name: "cityarchive", ..Default::default() },
        );
        assert_eq!(out.data["account-name"], "cityarchive");
    }

    #[test]
    fn eventhubs_namespace_host_comes_from_the_endpoint() {
        let resource = json!({"properties": {"serviceBusEndpoint": "https://city.servicebus.windows.net:443/"}});
        let keys = json!({"primaryConnectionString": "Endpoint=sb://city/;SharedAccessKey=x"});
        let out = curated(
            AzureKind::EventHubNamespace,
            &resource,
            Some(&keys),
            &Extras { name: "city", first_child: Some("vehicles"), password: None },
        );
        assert_eq!(out.data["fully-qualified-namespace"], "city.servicebus.windows.net");
        assert_eq!(out.data["hub"], "vehicles");
        assert_eq!(out.data["type"], "azure-eventhubs");
    }

    #[test]
    fn generic_exports_name_what_is_missing() {
        let spec: GenericSpec = serde_json::from_value(json!({
            "type": "Microsoft.Web/sites", "apiVersion": "2024-04-01",
            "exports": [{"key": "host", "pointer": "/properties/defaultHostName"}, {"key": "key", "pointer": "/k", "from": "ListKeys"}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let ok = generic(
            &spec,
            &json!({"properties": {"defaultHostName": "x.azurewebsites.net"}}),
            Some(&json!({"k": "s"})),
        );
        assert_eq!(ok.map(|e| e.data["host"].clone()).ok().as_deref(), Some("x.azurewebsites.net"));
        let missing = generic(&spec, &json!({}), None).err().unwrap_or_default();
        assert_eq!(missing.len(), 2);
    }
}
