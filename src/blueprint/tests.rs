use super::*;
use crate::api::blueprint::RolloutStatus;

fn blueprint(versions: &[&str]) -> SolutionBlueprint {
    let revisions: Vec<Value> = versions
        .iter()
        .map(|v| {
            serde_json::json!({
                "version": v,
                "parameters": {
                    "city": {"type": "string", "required": true, "pattern": "^[a-z][-a-z]*$"},
                    "replicas": {"type": "integer", "default": 2, "minimum": 1, "maximum": 10}
                },
                "template": {
                    "solution": "smart-transport",
                    "components": [{
                        "name": "api",
                        "image": format!("registry.example/traffic-api:{v}"),
                        "replicas": "${params.replicas}",
                        "env": [{"name": "CITY", "value": "${params.city}"}, {"name": "STACK", "value": "${instance.name}"}],
                        "uses": ["events"]
                    }],
                    "bindings": [{"name": "events", "secretRef": {"name": "${params.city}-events"}}]
                }
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "citystack.io/v1alpha1",
        "kind": "SolutionBlueprint",
        "metadata": {"name": "transport"},
        "spec": {"revisions": revisions}
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn stack(version: &str, parameters: Value, own: Value) -> SolutionStack {
    let mut spec =
        serde_json::json!({"blueprint": {"name": "transport", "version": version, "parameters": parameters}});
    if let (Some(spec), Some(own)) = (spec.as_object_mut(), own.as_object()) {
        spec.extend(own.clone());
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "citystack.io/v1alpha1",
        "kind": "SolutionStack",
        "metadata": {"name": "traffic", "namespace": "hanoi"},
        "spec": spec
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn reference(version: &str) -> BlueprintRef {
    BlueprintRef { name: "transport".into(), version: version.into(), parameters: Default::default() }
}

fn v(text: &str) -> Version {
    Version::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn an_exact_version_is_that_revision_or_missing() {
    let bp = blueprint(&["1.0.0", "1.1.0", "2.0.0"]);
    assert_eq!(
        resolve(&bp, &reference("1.1.0"), Some("2.0.0")).ok(),
        Some(Resolved { version: v("1.1.0"), record: false })
    );
    let error = resolve(&bp, &reference("1.2.0"), None).err().map(|e| (e.category(), e.to_string()));
    assert_eq!(
        error,
        Some((
            Category::MissingReference,
            "spec.blueprint.version: SolutionBlueprint transport has no revision 1.2.0 (published: 2.0.0, 1.1.0, 1.0.0)".into()
        ))
    );
    assert_eq!(resolve(&bp, &reference("one"), None).err().map(|e| e.category()), Some(Category::InvalidSpec));
    // `1.0` reads as a pin to people and as `^1.0` to the semver crate: refused, naming both.
    assert_eq!(resolve(&bp, &reference("1.0"), None).err().map(|e| e.category()), Some(Category::InvalidSpec));
    assert_eq!(resolve(&bp, &reference("^1.0"), None).map(|r| r.version).ok(), Some(v("1.1.0")));
}

#[test]
fn a_range_keeps_its_recorded_revision_until_a_rollout_moves_it() {
    let bp = blueprint(&["1.0.0", "1.1.0", "2.0.0"]);
    // Recorded and in range: stays, even with newer revisions published.
    assert_eq!(
        resolve(&bp, &reference("^1"), Some("1.0.0")).ok(),
        Some(Resolved { version: v("1.0.0"), record: false })
    );
    // New: the target (highest) when in range, else the highest in range below it; recorded.
    assert_eq!(resolve(&bp, &reference("*"), None).ok(), Some(Resolved { version: v("2.0.0"), record: true }));
    assert_eq!(resolve(&bp, &reference("^1"), None).ok(), Some(Resolved { version: v("1.1.0"), record: true }));
    // A record outside the range (the range changed) counts as none.
    assert_eq!(
        resolve(&bp, &reference("^1"), Some("2.0.0")).ok(),
        Some(Resolved { version: v("1.1.0"), record: true })
    );
    // A recorded revision no longer published: stays put, Stalled, instead of moving.
    let gone = resolve(&bp, &reference("^1"), Some("1.0.5")).err().map(|e| e.category());
    assert_eq!(gone, Some(Category::MissingReference));
    assert!(resolve(&bp, &reference("^3"), None).is_err());
}

#[test]
fn new_stacks_do_not_start_on_a_halted_or_unpinned_target() {
    let mut bp = blueprint(&["1.0.0", "2.0.0", "3.0.0"]);
    bp.spec.rollout = Some(crate::api::RolloutSpec { version: Some("2.0.0".into()), ..Default::default() });
    assert_eq!(resolve(&bp, &reference("*"), None).map(|r| r.version).ok(), Some(v("2.0.0")));
    bp.spec.rollout = None;
    bp.status = Some(crate::api::SolutionBlueprintStatus {
        rollout: Some(RolloutStatus { version: "3.0.0".into(), phase: "Halted".into(), ..Default::default() }),
        ..Default::default()
    });
    assert_eq!(resolve(&bp, &reference("*"), None).map(|r| r.version).ok(), Some(v("2.0.0")));
}

#[test]
fn an_instance_becomes_the_template_with_its_own_parts_beside() {
    let bp = blueprint(&["1.0.0"]);
    let own = serde_json::json!({"components": [{"name": "extra", "image": "registry.example/extra:1"}]});
    let stack = stack("1.0.0", serde_json::json!({"city": "hanoi", "replicas": 3}), own);
    let spec = instantiate(&stack, &bp, &bp.spec.revisions[0]).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = spec.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["api", "extra"]);
    assert_eq!(spec.components[0].replicas, Some(3));
    assert_eq!(spec.components[0].image, "registry.example/traffic-api:1.0.0");
    assert_eq!(spec.bindings[0].secret_ref.as_ref().map(|s| s.name.as_str()), Some("hanoi-events"));
    let env: Vec<_> = spec.components[0].env.iter().map(|e| e.value.clone().unwrap_or_default()).collect();
    assert_eq!(env, ["hanoi", "traffic"]);
    assert_eq!(spec.solution.as_deref(), Some("smart-transport"));
}

#[test]
fn bad_parameters_and_clashing_names_are_named() {
    let bp = blueprint(&["1.0.0"]);
    let error = |stack: SolutionStack| {
        instantiate(&stack, &bp, &bp.spec.revisions[0]).err().map(|e| (e.category(), e.to_string()))
    };
    let (category, message) = error(stack("1.0.0", serde_json::json!({"replicas": 0, "colour": "red"}), Value::Null))
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(category, Category::InvalidParameters);
    for path in
        ["spec.blueprint.parameters.colour", "spec.blueprint.parameters.city", "spec.blueprint.parameters.replicas"]
    {
        assert!(message.contains(path), "{message}");
    }
    let own = serde_json::json!({"bindings": [{"name": "api", "secretRef": {"name": "x"}}]});
    let clash = error(stack("1.0.0", serde_json::json!({"city": "hue"}), own));
    assert_eq!(clash.map(|(c, m)| (c, m.starts_with("spec.bindings[api]"))), Some((Category::InvalidSpec, true)));
}

#[test]
fn a_template_that_renders_a_wrong_type_is_named_at_its_field() {
    let mut bp = blueprint(&["1.0.0"]);
    bp.spec.revisions[0].template["components"][0]["replicas"] = Value::String("${params.city}".into());
    let stack = stack("1.0.0", serde_json::json!({"city": "hue"}), Value::Null);
    let error = instantiate(&stack, &bp, &bp.spec.revisions[0]).err().map(|e| (e.category(), e.to_string()));
    let (category, message) = error.unwrap_or_else(|| panic!("accepted"));
    assert_eq!(category, Category::InvalidBlueprint);
    assert!(
        message
            .starts_with("SolutionBlueprint transport revision 1.0.0: template.components[0].replicas: invalid type"),
        "{message}"
    );
    assert!(check(&bp.spec.revisions[0]).is_err_and(|e| e.starts_with("template.components[0].replicas")));
}

#[test]
fn a_revision_is_checked_before_any_instance_runs_it() {
    let bp = blueprint(&["1.0.0"]);
    assert_eq!(check(&bp.spec.revisions[0]), Ok(()));
    let mut bad = bp.spec.revisions[0].clone();
    bad.template["components"][0]["env"][0]["value"] = Value::String("${params.town}".into());
    assert!(
        check(&bad).is_err_and(|e| e.starts_with("template.components[0].env[0].value: `params.town`")),
        "{:?}",
        check(&bad)
    );
    let mut cycle = bp.spec.revisions[0].clone();
    cycle.template["components"][0]["dependsOn"] = serde_json::json!(["api"]);
    assert!(check(&cycle).is_err());
}
