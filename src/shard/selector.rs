//! The API server side of sharding: list and watch requests for SolutionStacks carry a
//! `shardSelector` (KEP-5866, alpha in Kubernetes 1.36 behind the `ShardedListAndWatch`
//! feature gate), so the API server sends each replica only the stacks of its range.
//!
//! kube-rs has no field for the parameter yet, so the stacks' client adds it to the query of
//! collection GETs (list and watch) of the one resource, and nothing else: gets of single
//! objects and every write pass untouched. Whether the server applies it is probed once:
//! a filtered list answers with `metadata.shardInfo`; a server without the gate ignores the
//! parameter, and the operator then filters on its side (same ranges, no memory saving).

use kube::Client;
use serde_json::Value;

use super::ring::Range;

/// Adds `shardSelector=<selector>` to list and watch requests of one resource.
#[derive(Clone, Debug)]
pub struct ShardQuery {
    /// `/<plural>`: a collection path ends with it.
    suffix: String,
    query: String,
}

impl ShardQuery {
    /// The query for collection requests of `resource` (its plural) restricted to `range`.
    pub fn new(resource: &str, range: &Range) -> Self {
        let query: String =
            form_urlencoded::Serializer::new(String::new()).append_pair("shardSelector", &range.selector()).finish();
        Self { suffix: format!("/{resource}"), query }
    }

    /// The request URI with the selector added, when it is a collection GET of the resource.
    pub fn rewrite(&self, method: &http::Method, uri: &http::Uri) -> Option<http::Uri> {
        if method != http::Method::GET || !uri.path().ends_with(&self.suffix) {
            return None;
        }
        let path_and_query = match uri.query() {
            Some(query) if !query.is_empty() => format!("{}?{query}&{}", uri.path(), self.query),
            _ => format!("{}?{}", uri.path(), self.query),
        };
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = path_and_query.parse().ok();
        http::Uri::from_parts(parts).ok()
    }
}

/// Whether the API server filters lists by `shardSelector`. The probe lists Secrets (which
/// the operator may list where it watches) with a selector of a one-hash range, so nothing is
/// returned in practice: a server that honours the field says so in `metadata.shardInfo`; one
/// without the feature gate ignores the parameter. (Lists of custom resources are filtered
/// too but do not echo `shardInfo`, so they cannot tell.)
///
/// Errors: the list's own (the caller retries).
pub async fn server_filters(client: &Client, namespace: Option<&str>) -> Result<bool, kube::Error> {
    let collection = match namespace {
        Some(ns) => format!("/api/v1/namespaces/{ns}/secrets"),
        None => "/api/v1/secrets".to_owned(),
    };
    let nothing = Range { start: 0, end: 1 };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("limit", "1")
        .append_pair("shardSelector", &nothing.selector())
        .finish();
    let request =
        http::Request::get(format!("{collection}?{query}")).body(Vec::new()).map_err(kube::Error::HttpError)?;
    let list: Value = client.request(request).await?;
    Ok(list.pointer("/metadata/shardInfo/selector").and_then(Value::as_str).is_some_and(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::ring::SPACE;

    #[test]
    fn only_collection_gets_of_the_resource_carry_the_selector() {
        let layer = ShardQuery::new("solutionstacks", &Range { start: 0, end: SPACE / 2 });
        let get = http::Method::GET;
        let rewritten = |method: &http::Method, uri: &str| {
            layer.rewrite(method, &uri.parse().unwrap_or_default()).map(|u| u.to_string())
        };
        let watch =
            rewritten(&get, "https://api:6443/apis/citystack.io/v1alpha1/solutionstacks?watch=true&resourceVersion=5");
        assert_eq!(
            watch.as_deref(),
            Some(
                "https://api:6443/apis/citystack.io/v1alpha1/solutionstacks?watch=true&resourceVersion=5&shardSelector=shardRange%28object.metadata.uid%2C+%270x0000000000000000%27%2C+%270x8000000000000000%27%29"
            )
        );
        assert!(
            rewritten(&get, "/apis/citystack.io/v1alpha1/namespaces/city/solutionstacks")
                .is_some_and(|u| u.contains("?shardSelector="))
        );
        for (method, uri) in [
            (http::Method::GET, "/apis/citystack.io/v1alpha1/namespaces/city/solutionstacks/portal"),
            (http::Method::PATCH, "/apis/citystack.io/v1alpha1/namespaces/city/solutionstacks/portal/status"),
            (http::Method::POST, "/apis/citystack.io/v1alpha1/namespaces/city/solutionstacks"),
            (http::Method::GET, "/apis/apps/v1/deployments?watch=true"),
            (http::Method::GET, "/apis/citystack.io/v1alpha1/azureresources"),
        ] {
            assert_eq!(rewritten(&method, uri), None, "{method} {uri}");
        }
    }
}
