//! Checks admission cannot express: `dependsOn` cycles longer than a self-reference (CEL has
//! no recursion, so the API server cannot see them), and environment names repeated between a
//! component's `env` and the `env` of the bindings it uses (a check across components and
//! bindings whose CEL cost exceeds the API server's budget). Run before any write, so such a
//! spec is Stalled at its first reconcile, naming the field. Pure.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::SolutionStackSpec;
use crate::error::{Error, Result};
use crate::stack::quantity;

/// A spec that passed [`validate`]: its components in dependency order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    /// Component names, every component after the components it depends on (ties in name
    /// order, so the order is stable).
    pub order: Vec<String>,
}

impl Validated {
    /// The components in waves: each depends only on components of earlier waves, so a wave's
    /// components can be applied at once. Within a wave, `order`'s order.
    pub fn waves(&self, spec: &SolutionStackSpec) -> Vec<Vec<String>> {
        let mut wave_of: BTreeMap<&str, usize> = BTreeMap::new();
        let mut waves: Vec<Vec<String>> = Vec::new();
        for name in &self.order {
            let deps = spec.components.iter().find(|c| &c.name == name).map(|c| c.depends_on.as_slice()).unwrap_or(&[]);
            // `order` puts dependencies first, so each one already has its wave.
            let wave = deps.iter().filter_map(|d| wave_of.get(d.as_str())).map(|w| w + 1).max().unwrap_or(0);
            wave_of.insert(name, wave);
            if waves.len() <= wave {
                waves.resize_with(wave + 1, Vec::new);
            }
            if let Some(members) = waves.get_mut(wave) {
                members.push(name.clone());
            }
        }
        waves
    }
}

/// Checks the spec for repeated environment names, then for dependency cycles among
/// components (bindings have no dependencies, so they cannot be part of one), and orders the
/// components.
///
/// Errors: `InvalidSpec` naming the component and variable when one name would be set twice
/// in a container (the API server refuses such a Deployment); `DependencyCycle` naming the
/// first cycle found, e.g. `api -> worker -> api` (components visited in name order, so the
/// message is stable).
pub fn validate(spec: &SolutionStackSpec) -> Result<Validated> {
    references(spec)?;
    environment_names(spec)?;
    requests_within_limits(spec)?;
    toleration_keys(spec)?;
    let edges: BTreeMap<&str, Vec<&str>> =
        spec.components.iter().map(|c| (c.name.as_str(), c.depends_on.iter().map(String::as_str).collect())).collect();
    let mut done = BTreeSet::new();
    let mut order = Vec::new();
    for start in edges.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(start, &edges, &mut path, &mut done, &mut order) {
            return Err(Error::DependencyCycle(cycle.join(" -> ")));
        }
    }
    Ok(Validated { order: order.into_iter().map(str::to_owned).collect() })
}

/// Names are unique across components and bindings, `uses` names bindings and `dependsOn`
/// names other components or bindings. Admission checks these on a stack as written (CEL
/// rules on `spec`); a stack that instantiates a blueprint gets most of its components from
/// the template, which admission never sees.
fn references(spec: &SolutionStackSpec) -> Result<()> {
    let mut names = BTreeSet::new();
    let components = spec.components.iter().map(|c| ("components", c.name.as_str()));
    for (field, name) in components.chain(spec.bindings.iter().map(|b| ("bindings", b.name.as_str()))) {
        if !names.insert(name) {
            return Err(Error::InvalidSpec(format!(
                "spec.{field}[{name}]: the name is used twice; names must be unique across components and bindings"
            )));
        }
    }
    let bindings: BTreeSet<&str> = spec.bindings.iter().map(|b| b.name.as_str()).collect();
    for component in &spec.components {
        if let Some(used) = component.uses.iter().find(|u| !bindings.contains(u.as_str())) {
            return Err(Error::InvalidSpec(format!(
                "spec.components[{}].uses: {used} is not the name of an entry in spec.bindings",
                component.name
            )));
        }
        if let Some(dep) = component.depends_on.iter().find(|d| !names.contains(d.as_str()) || **d == component.name) {
            let why = if *dep == component.name {
                "must not name the component itself"
            } else {
                "is not the name of a component or binding of this stack"
            };
            return Err(Error::InvalidSpec(format!("spec.components[{}].dependsOn: {dep} {why}", component.name)));
        }
    }
    Ok(())
}

/// No resource request is above its limit (the API server refuses such a Deployment: core/v1
/// validation "must be less than or equal to ... limit"). A quantity that does not parse is
/// left to the API server.
fn requests_within_limits(spec: &SolutionStackSpec) -> Result<()> {
    for component in &spec.components {
        let Some(resources) = &component.resources else { continue };
        let (Some(requests), Some(limits)) = (&resources.requests, &resources.limits) else { continue };
        for (name, request) in requests {
            let Some(limit) = limits.get(name) else { continue };
            if let (Some(r), Some(l)) = (quantity::milli(&request.0), quantity::milli(&limit.0))
                && r > l
            {
                return Err(Error::InvalidSpec(format!(
                    "spec.components[{}].resources.requests.{name}: {} is above the limit {} (resources.limits.{name}); a request may not exceed its limit",
                    component.name, request.0, limit.0
                )));
            }
        }
    }
    Ok(())
}

/// Toleration keys are label keys (core/v1 validation; a regular expression over every key is
/// beyond CEL's cost budget for an unbounded string).
fn toleration_keys(spec: &SolutionStackSpec) -> Result<()> {
    for component in &spec.components {
        for (i, key) in component.tolerations.iter().filter_map(|t| t.key.as_deref()).enumerate() {
            if !key.is_empty() && !is_label_key(key) {
                return Err(Error::InvalidSpec(format!(
                    "spec.components[{}].tolerations[{i}].key: {key:?} is not a label key ([DNS subdomain/]name, the name at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)",
                    component.name
                )));
            }
        }
    }
    Ok(())
}

/// A Kubernetes label key: an optional DNS-1123 subdomain prefix (at most 253 characters) and
/// `/`, then a name of at most 63 characters (API conventions, "Labels and selectors").
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let name_ok = (1..=63).contains(&name.len())
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let prefix_ok = prefix.is_none_or(|p| {
        (1..=253).contains(&p.len())
            && p.split('.').all(|label| {
                let lower = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                !label.is_empty()
                    && lower(label.chars().next())
                    && lower(label.chars().last())
                    && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    name_ok && prefix_ok
}

/// Every variable name a container would get is set once: the component's own `env` and the
/// `env` mappings of the bindings it uses (servicebinding.io, "Workload Projection").
fn environment_names(spec: &SolutionStackSpec) -> Result<()> {
    for component in &spec.components {
        // Which source set each name first: `env` or `binding <name>`.
        let mut seen: BTreeMap<&str, String> =
            component.env.iter().map(|e| (e.name.as_str(), "its env".to_owned())).collect();
        for binding in spec.bindings.iter().filter(|b| component.uses.contains(&b.name)) {
            for mapping in &binding.env {
                let this = format!("binding {}", binding.name);
                if let Some(first) = seen.insert(mapping.name.as_str(), this.clone()) {
                    return Err(Error::InvalidSpec(format!(
                        "spec.components[{}]: environment variable {} is set by both {first} and {this} (spec.bindings[{}].env); each name may be set once per component",
                        component.name, mapping.name, binding.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Depth-first search; returns the cycle (first node repeated at the end) if one is reachable.
/// Components finished are appended to `order` (post-order: dependencies first).
fn visit<'a>(
    node: &'a str,
    edges: &BTreeMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
    order: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    if let Some(at) = path.iter().position(|n| *n == node) {
        let mut cycle = path[at..].to_vec();
        cycle.push(node);
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    let next = edges.get(node)?;
    path.push(node);
    let mut sorted = next.clone();
    sorted.sort_unstable();
    for dep in sorted {
        if let Some(cycle) = visit(dep, edges, path, done, order) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node);
    order.push(node);
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Component;

    fn spec(deps: &[(&str, &[&str])]) -> SolutionStackSpec {
        let components = deps
            .iter()
            .map(|(name, on)| {
                serde_json::from_value::<Component>(serde_json::json!({"name": name, "image": "x", "dependsOn": on}))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        SolutionStackSpec {
            solution: None,
            paused: false,
            image_pull_secrets: vec![],
            components,
            bindings: vec![],
            azure: None,
            blueprint: None,
        }
    }

    #[test]
    fn independent_components_share_a_wave() {
        let spec = spec(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[]), ("d", &[]), ("e", &["c"])]);
        let validated = validate(&spec).map_err(|e| e.to_string());
        let waves = validated.map(|v| v.waves(&spec)).unwrap_or_default();
        assert_eq!(waves, [vec!["c", "d"], vec!["b", "e"], vec!["a"]]);
    }

    #[test]
    fn acyclic_graph_is_ordered_dependencies_first() {
        let mut spec = spec(&[("a", &["b", "db"]), ("b", &["c"]), ("c", &[]), ("d", &[])]);
        spec.bindings = serde_json::from_value(serde_json::json!([{"name": "db", "secretRef": {"name": "db"}}]))
            .unwrap_or_else(|e| panic!("{e}"));
        let validated = validate(&spec);
        let order = validated.map(|v| v.order).unwrap_or_default();
        assert_eq!(order, ["c", "b", "a", "d"]);
    }

    #[test]
    fn references_admission_checks_are_checked_again_for_expanded_specs() {
        let mut twice = spec(&[("a", &[]), ("b", &[])]);
        twice.components[1].name = "a".into();
        let mut unknown = spec(&[("a", &["nope"])]);
        let mut itself = spec(&[("a", &["a"])]);
        let mut unbound = spec(&[("a", &[])]);
        unbound.components[0].uses = vec!["db".into()];
        let message = |spec: &mut SolutionStackSpec| validate(spec).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message(&mut twice).starts_with("spec.components[a]: the name is used twice"));
        assert!(message(&mut unknown).starts_with("spec.components[a].dependsOn: nope is not"));
        assert!(message(&mut itself).starts_with("spec.components[a].dependsOn: a must not name"));
        assert!(message(&mut unbound).starts_with("spec.components[a].uses: db is not"));
    }

    #[test]
    fn an_environment_name_set_twice_in_a_component_is_named() {
        let stack = |component_env: serde_json::Value, uses: &[&str]| -> SolutionStackSpec {
            serde_json::from_value(serde_json::json!({
                "components": [{"name": "web", "image": "x", "env": component_env, "uses": uses}],
                "bindings": [
                    {"name": "db", "secretRef": {"name": "db"}, "env": [{"name": "DB_HOST", "key": "host"}]},
                    {"name": "replica", "secretRef": {"name": "r"}, "env": [{"name": "DB_HOST", "key": "host"}]},
                ]
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let cases = [
            (
                "env and a binding",
                stack(serde_json::json!([{"name": "DB_HOST", "value": "x"}]), &["db"]),
                Some("its env and binding db"),
            ),
            ("two bindings", stack(serde_json::json!([]), &["db", "replica"]), Some("binding db and binding replica")),
            ("a binding not used", stack(serde_json::json!([{"name": "DB_HOST", "value": "x"}]), &[]), None),
            ("one binding", stack(serde_json::json!([{"name": "OTHER", "value": "x"}]), &["db"]), None),
        ];
        for (name, spec, want) in cases {
            match (validate(&spec), want) {
                (Ok(_), None) => {}
                (Err(Error::InvalidSpec(message)), Some(want)) => {
                    assert!(
                        message.contains("spec.components[web]")
                            && message.contains("DB_HOST")
                            && message.contains(want),
                        "{name}: {message}"
                    )
                }
                (other, _) => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_request_above_its_limit_is_named() {
        let stack = |requests: serde_json::Value, limits: serde_json::Value| -> SolutionStackSpec {
            serde_json::from_value(serde_json::json!({
                "components": [{"name": "web", "image": "x", "resources": {"requests": requests, "limits": limits}}]
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let refused = validate(&stack(
            serde_json::json!({"cpu": "2", "memory": "1Gi"}),
            serde_json::json!({"cpu": "1500m", "memory": "2Gi"}),
        ));
        match refused {
            Err(Error::InvalidSpec(message)) => assert!(
                message.contains("spec.components[web].resources.requests.cpu") && message.contains("1500m"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        for (requests, limits) in [
            (serde_json::json!({"memory": "1Gi"}), serde_json::json!({"memory": "1Gi"})),
            (serde_json::json!({"memory": "1G"}), serde_json::json!({"memory": "1Gi"})),
            (serde_json::json!({"cpu": "100m"}), serde_json::json!({"memory": "1Gi"})),
            (serde_json::json!({"cpu": "not-a-quantity"}), serde_json::json!({"cpu": "1"})),
        ] {
            assert!(validate(&stack(requests.clone(), limits.clone())).is_ok(), "{requests} within {limits}");
        }
    }

    #[test]
    fn label_keys() {
        for good in ["a", "dedicated", "node.kubernetes.io/unreachable", "example.com/Gpu_Type.1"] {
            assert!(is_label_key(good), "{good}");
        }
        for bad in ["", "bad key", "-a", "a-", "/a", "Example.com/a", "a/b/c", "x.example./a", &"a".repeat(64)] {
            assert!(!is_label_key(bad), "{bad}");
        }
    }

    #[test]
    fn cycle_is_named() {
        let err = validate(&spec(&[("api", &["worker"]), ("worker", &["queue"]), ("queue", &["api"])]));
        match err {
            Err(Error::DependencyCycle(cycle)) => {
                assert_eq!(cycle, "api -> worker -> queue -> api")
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
    }
}
