//! `citystack render` and `citystack plan`: what stacks become, and what a blueprint revision
//! would change, computed offline exactly as the operator does (the same resolution,
//! expansion and rendering; Secrets assumed present, as `stack::render::render_documents`
//! says).

use std::collections::BTreeMap;

use kube::ResourceExt;
use semver::Version;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{SolutionBlueprint, SolutionStack};
use crate::blueprint::{self, VERSION_ANNOTATION, Wanted};
use crate::stack::render::{self, DesiredChild};

/// The blueprints and stacks of some YAML streams (other kinds are skipped).
#[derive(Default)]
pub struct Documents {
    /// By name.
    pub blueprints: BTreeMap<String, SolutionBlueprint>,
    /// In reading order.
    pub stacks: Vec<SolutionStack>,
}

impl Documents {
    /// Reads every document of `text` (`source` names it in errors).
    ///
    /// Errors: a document that is not YAML, or not a valid SolutionBlueprint or SolutionStack.
    pub fn read(&mut self, source: &str, text: &str) -> Result<(), String> {
        for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let at = || format!("{source}: document {}", index + 1);
            let value = Value::deserialize(document).map_err(|e| format!("{}: {e}", at()))?;
            match value.get("kind").and_then(Value::as_str) {
                Some("SolutionStack") => {
                    self.stacks.push(serde_json::from_value(value).map_err(|e| format!("{}: {e}", at()))?);
                }
                Some("SolutionBlueprint") => {
                    let blueprint: SolutionBlueprint =
                        serde_json::from_value(value).map_err(|e| format!("{}: {e}", at()))?;
                    self.blueprints.insert(blueprint.name_any(), blueprint);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `stack` as the operator reconciles it: expanded from its blueprint (at `version`, else the
/// revision it resolves to) when it names one; with the revision used.
///
/// Errors: the blueprint is not among `blueprints`, or resolution or expansion fails (the
/// message the stack's Stalled condition would carry).
pub fn expand(
    stack: &SolutionStack,
    blueprints: &BTreeMap<String, SolutionBlueprint>,
    version: Option<&Version>,
) -> Result<(SolutionStack, Option<Version>), String> {
    let Some(reference) = &stack.spec.blueprint else { return Ok((stack.clone(), None)) };
    let what = || format!("SolutionStack {}", key(stack));
    let found = blueprints
        .get(&reference.name)
        .ok_or_else(|| format!("{}: SolutionBlueprint {} is not in the files given", what(), reference.name))?;
    let version = match version {
        Some(v) => v.clone(),
        None => {
            let assigned = stack.annotations().get(VERSION_ANNOTATION).map(String::as_str);
            blueprint::resolve(found, reference, assigned).map_err(|e| format!("{}: {e}", what()))?.version
        }
    };
    let revision = blueprint::revision(found, &version)
        .ok_or_else(|| format!("{}: SolutionBlueprint {} has no revision {version}", what(), reference.name))?;
    let spec = blueprint::instantiate(stack, found, revision).map_err(|e| format!("{}: {e}", what()))?;
    let mut expanded = stack.clone();
    expanded.spec = spec;
    Ok((expanded, Some(version)))
}

/// Every stack's children as YAML (`citystack render`); a stack from a blueprint is preceded
/// by a comment naming the revision.
///
/// Errors: as [`expand`] and `stack::render::offline`.
pub fn render(documents: &Documents) -> Result<String, String> {
    let mut out = String::new();
    for stack in &documents.stacks {
        let (expanded, version) = expand(stack, &documents.blueprints, None)?;
        if let (Some(reference), Some(version)) = (&stack.spec.blueprint, version) {
            out.push_str(&format!(
                "# SolutionStack {}: SolutionBlueprint {} revision {version}\n",
                key(stack),
                reference.name
            ));
        }
        out.push_str(&render::to_yaml(&render::offline(&expanded)?).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// What publishing (or rolling out) revision `version` of the blueprint `name` would do to
/// each of `documents`' stacks that instantiate it (`citystack plan`): which move, and the
/// objects each would add, change (with the first fields that differ) or remove; a stack
/// that does not render is reported on its line, and the others still are.
///
/// Errors: the blueprint or the revision is missing, or the revision does not check out.
pub fn plan(documents: &Documents, name: &str, version: Option<&str>) -> Result<String, String> {
    let found =
        documents.blueprints.get(name).ok_or_else(|| format!("SolutionBlueprint {name} is not in the files given"))?;
    let target = match version {
        Some(v) => Version::parse(v).map_err(|e| format!("--version {v}: {e}"))?,
        None => blueprint::versions(found).into_iter().find(|v| v.pre.is_empty()).ok_or("no published revision")?,
    };
    if blueprint::revision(found, &target).is_none() {
        return Err(format!("SolutionBlueprint {name} has no revision {target}"));
    }
    if let Err(why) = blueprint::revision(found, &target).map(blueprint::check).unwrap_or(Ok(())) {
        return Err(format!("revision {target} does not check out: {why}"));
    }
    // Where each instance is now: its record, else what it resolves to without the target.
    let mut without = found.clone();
    without.spec.revisions.retain(|r| Version::parse(&r.version).ok().as_ref() != Some(&target));
    if without.spec.rollout.as_ref().and_then(|r| r.version.as_deref()) == Some(target.to_string().as_str()) {
        without.spec.rollout = None;
    }
    let before: BTreeMap<String, SolutionBlueprint> = [(name.to_owned(), without)].into();
    let after: BTreeMap<String, SolutionBlueprint> = [(name.to_owned(), found.clone())].into();

    let instances: Vec<&SolutionStack> =
        documents.stacks.iter().filter(|s| s.spec.blueprint.as_ref().is_some_and(|b| b.name == name)).collect();
    let mut lines = Vec::new();
    let (mut moving, mut added, mut changed, mut removed, mut failing) = (0, 0, 0, 0, 0);
    for stack in &instances {
        let Some(reference) = &stack.spec.blueprint else { continue };
        let wanted = Wanted::parse(&reference.version).map_err(|e| format!("SolutionStack {}: {e}", key(stack)))?;
        let recorded = stack.annotations().get(VERSION_ANNOTATION).and_then(|v| Version::parse(v).ok());
        let current = match (&wanted, recorded) {
            (Wanted::Exact(v), _) => Some(v.clone()),
            (Wanted::Range(_), Some(v)) => Some(v),
            (Wanted::Range(_), None) => expand(stack, &before, None).ok().and_then(|(_, v)| v),
        };
        let moves = matches!(&wanted, Wanted::Range(r) if r.matches(&target)) && current.as_ref() != Some(&target);
        let from = current.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string);
        if !moves {
            let why = match &wanted {
                Wanted::Exact(_) => "pinned to an exact version".to_owned(),
                Wanted::Range(_) if current.as_ref() == Some(&target) => "already on it".to_owned(),
                Wanted::Range(_) => format!("{target} is outside its range {}", reference.version),
            };
            lines.push(format!("  {:<32} stays on {from} ({why})", key(stack)));
            continue;
        }
        moving += 1;
        let rendered = |set: &BTreeMap<String, SolutionBlueprint>, v: &Version| {
            expand(stack, set, Some(v)).and_then(|(expanded, _)| render::offline(&expanded))
        };
        let old = match &current {
            Some(v) if blueprint::revision(found, v).is_some() => {
                match rendered(&before, v).or_else(|_| rendered(&after, v)) {
                    Ok(children) => children,
                    Err(why) => {
                        lines.push(format!(
                            "  {:<32} stays on {from}: Stalled there, a rollout leaves it ({why})",
                            key(stack)
                        ));
                        moving -= 1;
                        failing += 1;
                        continue;
                    }
                }
            }
            _ => Vec::new(),
        };
        let new = match rendered(&after, &target) {
            Ok(children) => children,
            Err(why) => {
                lines.push(format!("  {:<32} {from} -> {target}: WOULD FAIL: {why}", key(stack)));
                failing += 1;
                continue;
            }
        };
        let diff = diff(&old, &new);
        added += diff.iter().filter(|d| d.starts_with("+")).count();
        removed += diff.iter().filter(|d| d.starts_with("-")).count();
        changed += diff.iter().filter(|d| d.starts_with("~")).count();
        let summary = if diff.is_empty() { "no object changes".to_owned() } else { diff.join("; ") };
        lines.push(format!("  {:<32} {from} -> {target}: {summary}", key(stack)));
    }
    let mut out = format!("SolutionBlueprint {name}: revision {target}, {} instances\n", instances.len());
    out.push_str(&lines.join("\n"));
    if !lines.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!(
        "{moving} of {} instances would move; objects: {added} added, {changed} changed, {removed} removed\n",
        instances.len()
    ));
    if failing > 0 {
        out.push_str(&format!("{failing} instances do not render (see above)\n"));
    }
    Ok(out)
}

/// `+ Kind name`, `- Kind name`, `~ Kind name (field, field)` per child that differs.
fn diff(old: &[DesiredChild], new: &[DesiredChild]) -> Vec<String> {
    let index = |children: &[DesiredChild]| -> BTreeMap<(String, String), Value> {
        children.iter().map(|c| ((c.kind.as_str().to_owned(), c.name.clone()), c.object.clone())).collect()
    };
    let (old, new) = (index(old), index(new));
    let mut out = Vec::new();
    for ((kind, name), object) in &new {
        match old.get(&(kind.clone(), name.clone())) {
            None => out.push(format!("+ {kind} {name}")),
            Some(previous) => {
                let mut fields = Vec::new();
                differing(previous, object, String::new(), &mut fields);
                fields.retain(|f| !f.starts_with("metadata.annotations"));
                if !fields.is_empty() {
                    let more = if fields.len() > 3 { format!(", +{} more", fields.len() - 3) } else { String::new() };
                    fields.truncate(3);
                    out.push(format!("~ {kind} {name} ({}{more})", fields.join(", ")));
                }
            }
        }
    }
    for (kind, name) in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(format!("- {kind} {name}"));
    }
    out
}

/// The paths of the leaves that differ between `a` and `b`.
fn differing(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                differing(x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), sub, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differing(p, q, format!("{path}[{i}]"), out);
            }
        }
        (p, q) if p != q => out.push(path),
        _ => {}
    }
}

fn key(stack: &SolutionStack) -> String {
    format!("{}/{}", stack.namespace().unwrap_or_else(|| "default".into()), stack.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: [(&str, &str); 7] = [
        ("blueprint-cybersecurity.yaml", include_str!("../../examples/blueprints/blueprint-cybersecurity.yaml")),
        ("blueprint-e-government.yaml", include_str!("../../examples/blueprints/blueprint-e-government.yaml")),
        ("blueprint-smart-education.yaml", include_str!("../../examples/blueprints/blueprint-smart-education.yaml")),
        ("blueprint-smart-health.yaml", include_str!("../../examples/blueprints/blueprint-smart-health.yaml")),
        ("blueprint-smart-tourism.yaml", include_str!("../../examples/blueprints/blueprint-smart-tourism.yaml")),
        ("blueprint-smart-transport.yaml", include_str!("../../examples/blueprints/blueprint-smart-transport.yaml")),
        ("instances.yaml", include_str!("../../examples/blueprints/instances.yaml")),
    ];

    fn catalog() -> Documents {
        let mut documents = Documents::default();
        for (name, text) in CATALOG {
            documents.read(name, text).unwrap_or_else(|e| panic!("{e}"));
        }
        documents
    }

    #[test]
    fn every_catalog_revision_checks_out_and_every_instance_renders() {
        let documents = catalog();
        assert_eq!(documents.blueprints.len(), 6);
        for blueprint in documents.blueprints.values() {
            for revision in &blueprint.spec.revisions {
                assert_eq!(crate::blueprint::check(revision), Ok(()), "{} {}", blueprint.name_any(), revision.version);
            }
        }
        let rendered = render(&documents).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rendered.matches("# SolutionStack ").count(), documents.stacks.len());
    }

    #[test]
    fn transport_instance_renders_as_the_operator_would() {
        let mut documents = catalog();
        documents.stacks.retain(|s| s.namespace().as_deref() == Some("hue") && s.name_any() == "transport");
        insta::assert_snapshot!(render(&documents).unwrap_or_else(|e| panic!("{e}")));
    }

    #[test]
    fn plan_shows_the_blast_radius_of_a_revision() {
        insta::assert_snapshot!(plan(&catalog(), "smart-transport", Some("1.1.0")).unwrap_or_else(|e| panic!("{e}")));
        // Pinned stacks stay; a revision that does not exist is refused.
        let education = plan(&catalog(), "smart-education", None).unwrap_or_else(|e| panic!("{e}"));
        assert!(education.contains("stays on 2.3.0 (pinned to an exact version)"), "{education}");
        assert!(plan(&catalog(), "smart-transport", Some("9.0.0")).is_err());
    }
}
