//! Drift detection: is the desired state already present in the observed object?
//!
//! An apply is skipped only when both hold: the child's recorded desired-state hash equals
//! the new one (catches a field we stopped setting, which a subset check cannot see) and the
//! desired fields are a subset of the observed object (catches hand edits, which the hash
//! cannot see). The subset check tolerates what the API server adds (defaults) and the
//! equivalent forms it normalises: resource quantities (`0.5` = `500m`, `1Gi` =
//! `1073741824`) and int-or-string values (`8080` = `"8080"`).

use serde_json::Value;

use crate::naming::DESIRED_HASH_ANNOTATION;

/// Whether `observed` already carries `desired`: same recorded hash, and every desired field
/// present with an equivalent value.
pub fn converged(desired: &Value, observed: &Value) -> bool {
    let hash = |v: &Value| v.pointer("/metadata/annotations").and_then(|a| a.get(DESIRED_HASH_ANNOTATION)).cloned();
    hash(desired).is_some() && hash(desired) == hash(observed) && is_subset(desired, observed, false)
}

/// Whether every field of `desired` appears in `observed` with an equivalent value.
///
/// Objects: each desired key must match (an absent key matches an empty or null desired
/// value, which the API server drops). Lists of objects with a `name` are matched by name,
/// so items others added (an injected sidecar) do not count as drift; other lists must have
/// the same length and match item by item. `in_quantities` is true under a `resources`,
/// `limits` or `requests` map, where strings compare as Kubernetes quantities.
pub fn is_subset(desired: &Value, observed: &Value, in_quantities: bool) -> bool {
    match (desired, observed) {
        (Value::Object(d), Value::Object(o)) => d.iter().all(|(key, dv)| match o.get(key) {
            Some(ov) => is_subset(dv, ov, in_quantities || matches!(key.as_str(), "limits" | "requests")),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(o)) => {
            let named = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_owned);
            if !d.is_empty() && d.iter().all(|v| named(v).is_some()) {
                d.iter().all(|dv| o.iter().any(|ov| named(ov) == named(dv) && is_subset(dv, ov, in_quantities)))
            } else {
                d.len() == o.len() && d.iter().zip(o).all(|(dv, ov)| is_subset(dv, ov, in_quantities))
            }
        }
        (Value::Null, _) => true,
        (d, Value::Null) => is_empty(d),
        (Value::Number(d), Value::String(o)) | (Value::String(o), Value::Number(d)) => {
            o == &d.to_string() || (in_quantities && quantity_eq(&d.to_string(), o))
        }
        (Value::String(d), Value::String(o)) => d == o || (in_quantities && quantity_eq(d, o)),
        (Value::Number(d), Value::Number(o)) => d == o || d.as_f64() == o.as_f64(),
        (d, o) => d == o,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(list) => list.is_empty(),
        _ => false,
    }
}

/// Compares two Kubernetes quantities by value (k8s.io/apimachinery resource.Quantity
/// grammar: decimal number, then a binary suffix Ki..Ei, a decimal suffix n u m k M G T P E,
/// or an exponent e/E). Unparseable input compares as unequal.
pub fn quantity_eq(a: &str, b: &str) -> bool {
    match (parse_quantity(a), parse_quantity(b)) {
        (Some(x), Some(y)) => {
            let scale = x.abs().max(y.abs()).max(f64::MIN_POSITIVE);
            ((x - y) / scale).abs() < 1e-9
        }
        _ => false,
    }
}

fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-'))).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_added_by_the_server_are_not_drift() {
        let desired =
            json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let observed = json!({"spec": {"replicas": 2, "progressDeadlineSeconds": 600,
            "template": {"spec": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}]}}}});
        assert!(is_subset(&desired, &observed, false));
    }

    #[test]
    fn hand_edits_are_drift() {
        let desired = json!({"spec": {"replicas": 2}});
        assert!(!is_subset(&desired, &json!({"spec": {"replicas": 5}}), false));
        let desired = json!({"containers": [{"name": "a", "image": "x:1"}]});
        assert!(!is_subset(&desired, &json!({"containers": [{"name": "a", "image": "x:2"}]}), false));
        assert!(!is_subset(&desired, &json!({"containers": []}), false));
    }

    #[test]
    fn sidecars_added_by_others_are_not_drift() {
        let desired = json!({"containers": [{"name": "a"}]});
        let observed = json!({"containers": [{"name": "mesh-proxy"}, {"name": "a"}]});
        assert!(is_subset(&desired, &observed, false));
    }

    #[test]
    fn quantities_compare_by_value_only_under_resources() {
        let desired = json!({"resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}, "limits": {"cpu": 1}}});
        let observed =
            json!({"resources": {"requests": {"cpu": "500m", "memory": "1073741824"}, "limits": {"cpu": "1"}}});
        assert!(is_subset(&desired, &observed, false));
        assert!(!is_subset(&json!({"image": "1k"}), &json!({"image": "1000"}), false));
        assert!(!quantity_eq("100m", "1"));
        assert!(quantity_eq("1e3", "1k"));
    }

    #[test]
    fn int_or_string_forms_are_equal() {
        assert!(is_subset(&json!({"port": 8080}), &json!({"port": "8080"}), false));
        assert!(!is_subset(&json!({"port": "http"}), &json!({"port": 8080}), false));
    }

    #[test]
    fn converged_needs_the_recorded_hash() {
        let desired = json!({"metadata": {"annotations": {DESIRED_HASH_ANNOTATION: "h2"}}, "spec": {"a": 1}});
        let stale = json!({"metadata": {"annotations": {DESIRED_HASH_ANNOTATION: "h1"}}, "spec": {"a": 1, "b": 2}});
        assert!(!converged(&desired, &stale));
        let fresh = json!({"metadata": {"annotations": {DESIRED_HASH_ANNOTATION: "h2"}}, "spec": {"a": 1, "b": 2}});
        assert!(converged(&desired, &fresh));
    }
}
