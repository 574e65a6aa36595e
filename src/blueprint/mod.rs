//! Blueprints: a SolutionStack that names a `SolutionBlueprint` becomes the revision's
//! template, expanded for it, with the stack's own components and bindings beside the
//! template's. Which revision a stack runs is decided here for an exact version, and by the
//! rollout (`rollout`) for a range; the decision is kept on the stack in the annotation
//! [`VERSION_ANNOTATION`], so a stack never moves to a newer revision outside a rollout.
//! Everything here is pure; the stack controller reads the blueprint from its cache.

pub mod controller;
pub mod offline;
pub mod params;
pub mod rollout;
pub mod template;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use kube::ResourceExt;
use semver::{Version, VersionReq};
use serde_json::Value;

use crate::api::blueprint::{BlueprintRef, Revision, SolutionBlueprint};
use crate::api::{SolutionStack, SolutionStackSpec};
use crate::error::{Category, Error, bounded};

/// Annotation on a SolutionStack that tracks a version range: the revision it runs, written
/// by the operator when the stack first resolves and by the blueprint's rollouts.
pub const VERSION_ANNOTATION: &str = "citystack.io/blueprint-version";

/// What `spec.blueprint.version` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// One version: the stack stays on it.
    Exact(Version),
    /// A semver range (Cargo's syntax: `^1`, `~1.4`, `>=1.2, <2`, `*`): the stack tracks it.
    Range(VersionReq),
}

impl Wanted {
    /// Parses `spec.blueprint.version`: a full version is exact, anything else a range.
    ///
    /// Errors: `InvalidSpec` naming the field when it is neither.
    pub fn parse(version: &str) -> Result<Self, Error> {
        if let Ok(exact) = Version::parse(version.trim()) {
            return Ok(Wanted::Exact(exact));
        }
        // `1.0` would be Cargo's `^1.0`: a range to the semver crate, a pin to most readers.
        if !version.contains(['^', '~', '<', '>', '=', '*', ',']) {
            return Err(Error::InvalidSpec(format!(
                "spec.blueprint.version: {:?} is not a full version; pin with a full version (1.0.0) or track a range with an operator (^1.0, ~1.0, >=1.0, *)",
                bounded(version, 64)
            )));
        }
        VersionReq::parse(version.trim()).map(Wanted::Range).map_err(|e| {
            Error::InvalidSpec(format!(
                "spec.blueprint.version: {:?} is neither a version (1.4.0) nor a semver range (^1, ~1.4, >=1.2, <2, *): {e}",
                bounded(version, 64)
            ))
        })
    }

    /// Whether `version` satisfies it (a range takes pre-releases only when it names one).
    pub fn matches(&self, version: &Version) -> bool {
        match self {
            Wanted::Exact(exact) => exact == version,
            Wanted::Range(range) => range.matches(version),
        }
    }
}

/// The published versions of a blueprint, highest first (entries that do not parse, which
/// admission refuses, are skipped).
pub fn versions(blueprint: &SolutionBlueprint) -> Vec<Version> {
    let mut versions: Vec<Version> =
        blueprint.spec.revisions.iter().filter_map(|r| Version::parse(&r.version).ok()).collect();
    versions.sort_by(|a, b| b.cmp(a));
    versions
}

/// The revision the rollout moves the fleet to: `spec.rollout.version`, else the highest
/// published version that is not a pre-release.
pub fn target(blueprint: &SolutionBlueprint) -> Option<Version> {
    let pinned =
        blueprint.spec.rollout.as_ref().and_then(|r| r.version.as_deref()).and_then(|v| Version::parse(v).ok());
    pinned.or_else(|| versions(blueprint).into_iter().find(|v| v.pre.is_empty()))
}

/// Whether the rollout to `version` is halted (its status says so): new instances then start
/// below it.
fn halted(blueprint: &SolutionBlueprint, version: &Version) -> bool {
    let rollout = blueprint.status.as_ref().and_then(|s| s.rollout.as_ref());
    rollout.is_some_and(|r| r.phase == "Halted" && Version::parse(&r.version).ok().as_ref() == Some(version))
}

/// The revision a stack runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Its version.
    pub version: Version,
    /// True when the choice is new and must be recorded on the stack ([`VERSION_ANNOTATION`]).
    pub record: bool,
}

/// Which revision of `blueprint` a stack asking for `reference` runs, given the version
/// recorded on it (`assigned`, the annotation).
///
/// - An exact version: that one.
/// - A range, with a recorded version in the range that is still published: that one (only a
///   rollout changes the record).
/// - A range without one (a new stack, or its range changed): the rollout's target when it is
///   in the range and its rollout is not halted, else the highest published version in the
///   range below the target; recorded from then on.
///
/// Errors: `InvalidSpec` for a version that does not parse; `MissingReference` when no
/// published revision fits, or the recorded one is no longer published (the stack stays
/// where it is rather than move outside a rollout).
pub fn resolve(
    blueprint: &SolutionBlueprint,
    reference: &BlueprintRef,
    assigned: Option<&str>,
) -> Result<Resolved, Error> {
    let wanted = Wanted::parse(&reference.version)?;
    let published = versions(blueprint);
    let name = blueprint.name_any();
    let listed = || bounded(&published.iter().map(Version::to_string).collect::<Vec<_>>().join(", "), 256);
    let missing = |what: String| Error::refused(Category::MissingReference, what);
    if let Wanted::Exact(exact) = &wanted {
        return match published.contains(exact) {
            true => Ok(Resolved { version: exact.clone(), record: false }),
            false => Err(missing(format!(
                "spec.blueprint.version: SolutionBlueprint {name} has no revision {exact} (published: {})",
                listed()
            ))),
        };
    }
    if let Some(recorded) = assigned.and_then(|a| Version::parse(a.trim()).ok()).filter(|v| wanted.matches(v)) {
        return match published.contains(&recorded) {
            true => Ok(Resolved { version: recorded, record: false }),
            false => Err(missing(format!(
                "SolutionBlueprint {name} no longer publishes revision {recorded}, which this stack runs \
                 (annotation {VERSION_ANNOTATION}); publish it again or set spec.blueprint.version (published: {})",
                listed()
            ))),
        };
    }
    let target = target(blueprint);
    let below = |t: &Version| published.iter().find(|v| *v < t && wanted.matches(v)).cloned();
    let chosen = match &target {
        Some(t) if wanted.matches(t) && published.contains(t) && !halted(blueprint, t) => Some(t.clone()),
        Some(t) => below(t).or_else(|| published.iter().find(|v| wanted.matches(v) && !halted(blueprint, v)).cloned()),
        None => published.iter().find(|v| wanted.matches(v)).cloned(),
    };
    chosen.map(|version| Resolved { version, record: true }).ok_or_else(|| {
        missing(format!(
            "spec.blueprint.version: no revision of SolutionBlueprint {name} is in the range {} (published: {})",
            bounded(&reference.version, 64),
            listed()
        ))
    })
}

/// The revision `version` of `blueprint`.
pub fn revision<'a>(blueprint: &'a SolutionBlueprint, version: &Version) -> Option<&'a Revision> {
    blueprint.spec.revisions.iter().find(|r| Version::parse(&r.version).ok().as_ref() == Some(version))
}

/// The spec `stack` becomes with `revision` of `blueprint`: the template expanded with the
/// stack's parameters, then the stack's own components and bindings added beside the
/// template's; the stack's `solution`, `paused`, `azure` fields and pull secrets win over the
/// template's.
///
/// Errors: `InvalidParameters` naming every parameter that does not check out
/// (`spec.blueprint.parameters.<name>`); `InvalidBlueprint` naming the template field whose
/// expression fails or whose value is not what a SolutionStack spec allows; `InvalidSpec`
/// when the stack's own components or bindings clash with the template's by name.
pub fn instantiate(
    stack: &SolutionStack,
    blueprint: &SolutionBlueprint,
    revision: &Revision,
) -> Result<SolutionStackSpec, Error> {
    template::isolated(|| instantiate_here(stack, blueprint, revision))
        .map_err(|e| Error::refused(Category::InvalidBlueprint, e))
        .and_then(|result| result)
}

fn instantiate_here(
    stack: &SolutionStack,
    blueprint: &SolutionBlueprint,
    revision: &Revision,
) -> Result<SolutionStackSpec, Error> {
    let reference =
        stack.spec.blueprint.as_ref().ok_or_else(|| Error::InvalidSpec("spec.blueprint is not set".into()))?;
    let name = blueprint.name_any();
    let version = &revision.version;
    let invalid_blueprint = |what: String| {
        Error::refused(Category::InvalidBlueprint, format!("SolutionBlueprint {name} revision {version}: {what}"))
    };
    params::check_schema(&revision.parameters, "parameters").map_err(|errors| invalid_blueprint(joined(&errors)))?;
    let values = params::resolve(&revision.parameters, &reference.parameters, "spec.blueprint.parameters")
        .map_err(|errors| Error::refused(Category::InvalidParameters, joined(&errors)))?;
    let vars = template::Vars {
        params: values,
        name: stack.name_any(),
        namespace: stack.namespace().unwrap_or_default(),
        labels: stack.labels().clone(),
    };
    let spec = render(&revision.template, &vars).map_err(invalid_blueprint)?;
    merge(spec, &stack.spec, blueprint)
}

/// The template expanded for `vars` and read as a SolutionStack spec (on the [`template::isolated`] thread).
///
/// Errors: the template field that fails, as `template.<path>: <why>`.
fn render(template: &Value, vars: &template::Vars) -> Result<SolutionStackSpec, String> {
    let expanded = template::expand(template, vars).map_err(|e| format!("template.{e}"))?;
    serde_path_to_error::deserialize::<_, SolutionStackSpec>(expanded).map_err(|e| {
        let path = e.path().to_string();
        let message = crate::readable::value_free(&e.inner().to_string());
        if path == "." { format!("template: {message}") } else { format!("template.{path}: {message}") }
    })
}

/// Checks a revision as it is published, before any instance runs it: its parameter schema
/// (`params::check_schema`), every expression parses within the bounds (`template::compile`),
/// and the template expanded with sample values (`params::samples`) for a sample instance
/// reads as a SolutionStack spec that `validate` accepts. Sampling checks the types along the
/// branches the samples take (CEL here has no type checker); a branch they do not take is
/// checked when an instance takes it, and that instance is Stalled naming the field.
///
/// Errors: the first problem, naming the field under the revision (`parameters.replicas`,
/// `template.components[0].replicas`).
pub fn check(revision: &Revision) -> Result<(), String> {
    template::isolated(|| check_here(revision)).and_then(|result| result)
}

fn check_here(revision: &Revision) -> Result<(), String> {
    params::check_schema(&revision.parameters, "parameters").map_err(|errors| joined(&errors))?;
    for (path, source) in template::expressions(&revision.template) {
        template::compile(&source).map_err(|e| format!("template.{path}: {e}"))?;
    }
    let vars = template::Vars {
        params: params::samples(&revision.parameters),
        name: "sample".into(),
        namespace: "sample".into(),
        labels: Default::default(),
    };
    let spec = render(&revision.template, &vars)?;
    crate::stack::validate::validate(&spec).map_err(|e| format!("template: {e}"))?;
    Ok(())
}

fn merge(
    mut spec: SolutionStackSpec,
    own: &SolutionStackSpec,
    blueprint: &SolutionBlueprint,
) -> Result<SolutionStackSpec, Error> {
    let taken: BTreeSet<&str> =
        spec.components.iter().map(|c| c.name.as_str()).chain(spec.bindings.iter().map(|b| b.name.as_str())).collect();
    let clash = own
        .components
        .iter()
        .map(|c| ("components", &c.name))
        .chain(own.bindings.iter().map(|b| ("bindings", &b.name)));
    for (field, name) in clash {
        if taken.contains(name.as_str()) {
            return Err(Error::InvalidSpec(format!(
                "spec.{field}[{name}]: the blueprint's template already has a component or binding named {name}; rename this one"
            )));
        }
    }
    let taken: BTreeSet<String> = taken.into_iter().map(str::to_owned).collect();
    spec.components.extend(own.components.iter().filter(|c| !taken.contains(&c.name)).cloned());
    spec.bindings.extend(own.bindings.iter().cloned());
    for secret in &own.image_pull_secrets {
        if !spec.image_pull_secrets.contains(secret) {
            spec.image_pull_secrets.push(secret.clone());
        }
    }
    spec.solution = own.solution.clone().or(spec.solution).or_else(|| blueprint.spec.solution.clone());
    spec.paused = own.paused || spec.paused;
    if let Some(azure) = &own.azure {
        let mut merged = spec.azure.take().unwrap_or_default();
        merged.resource_group = azure.resource_group.clone().or(merged.resource_group);
        merged.location = azure.location.clone().or(merged.location);
        merged.subscription_id = azure.subscription_id.clone().or(merged.subscription_id);
        merged.credential_ref = azure.credential_ref.clone().or(merged.credential_ref);
        spec.azure = Some(merged);
    }
    spec.blueprint = own.blueprint.clone();
    if spec.components.is_empty() {
        return Err(Error::InvalidSpec(
            "spec.components: neither the blueprint's template nor the stack gives a component".into(),
        ));
    }
    Ok(spec)
}

fn joined(errors: &[impl std::fmt::Display]) -> String {
    bounded(&errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "), 1024)
}
