//! The `SolutionBlueprint` custom resource (group `citystack.io`, version `v1alpha1`): a
//! partner's solution, published once and instantiated per customer by SolutionStacks.
//!
//! Revisions live in the blueprint (`spec.revisions`, a list keyed by `version`) rather than
//! one object per version: publishing, the rollout that takes the fleet to it, and the status
//! of every revision are one object a partner reviews and applies in one change, and each
//! revision is immutable through a CEL transition rule that the API server correlates by
//! `version`. Revisions are never removed either: one removed and published again with other
//! content would change the stacks that run it under the same version. The cost is size: at
//! most 32 revisions of at most 64 KiB of template each fit under etcd's object limit; a
//! solution that needs more starts a new blueprint (a new major line).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Semantic version 2.0.0 (`MAJOR.MINOR.PATCH[-pre][+build]`), as semver.org gives it.
pub const SEMVER_PATTERN: &str = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$";

/// A partner solution: its published revisions (each a parameter schema and a SolutionStack
/// template) and how a new revision rolls out across the stacks that instantiate it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "citystack.io",
    version = "v1alpha1",
    kind = "SolutionBlueprint",
    plural = "solutionblueprints",
    shortname = "blueprint",
    status = "SolutionBlueprintStatus",
    category = "citystack",
    doc = "A partner solution: versioned revisions (parameter schema + SolutionStack template with CEL expressions) and their rollout across the stacks that instantiate it.",
    printcolumn(name = "Latest", type_ = "string", json_path = ".status.latestVersion", description = "Highest published revision"),
    printcolumn(name = "Instances", type_ = "integer", json_path = ".status.instances", description = "Stacks that instantiate this blueprint"),
    printcolumn(name = "Updated", type_ = "integer", json_path = ".status.updated", description = "Instances on the rollout's target revision"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.ready", description = "Instances Ready"),
    printcolumn(name = "Target", type_ = "string", json_path = ".status.rollout.version", description = "The revision the rollout moves the fleet to"),
    printcolumn(name = "Rollout", type_ = "string", json_path = ".status.rollout.phase", description = "Progressing, Soaking, Paused, Halted or Complete"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63")
        .message("metadata.name must be a DNS-1035 label of at most 63 characters: it becomes a label value on every instance"),
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.rollout) || !has(self.rollout.version) || self.revisions.exists(r, r.version == self.rollout.version)",
        "messageExpression": "'no revision ' + self.rollout.version + ' is published in spec.revisions'",
        "fieldPath": ".rollout.version"
    },
    {
        "rule": "oldSelf.revisions.all(o, self.revisions.exists(n, n.version == o.version))",
        "message": "a published revision is never removed: stacks may run it, and a version published again with other content would change them; keep every version of the current blueprint in spec.revisions",
        "fieldPath": ".revisions"
    }
]))]
pub struct SolutionBlueprintSpec {
    /// Catalog family (e.g. `smart-transport`), the default `spec.solution` of instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), regex(pattern = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"))]
    pub solution: Option<String>,

    /// Who publishes the solution (the partner), for people reading the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub publisher: Option<String>,

    /// What the solution does, for people reading the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub description: Option<String>,

    /// The published revisions, one per semantic version. A revision never changes and is
    /// never removed once published (rules on the entries and the list); publish a new
    /// version instead.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["version"]))]
    pub revisions: Vec<Revision>,

    /// How stacks that track a version range move to a new revision. Without it, stacks
    /// tracking a range move to the highest matching revision in one wave per 25 % of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
}

/// One published version of the solution.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self == oldSelf", "messageExpression": "'revision ' + self.version + ' is published and immutable: publish a new version instead'"}
]))]
pub struct Revision {
    /// Semantic version (semver.org 2.0.0), e.g. `1.4.0`; a `-pre` version is only chosen by
    /// instances that ask for it by exact version.
    #[schemars(
        length(min = 5, max = 64),
        regex(
            pattern = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
        )
    )]
    pub version: String,

    /// What changed in this revision, for people reading the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub description: Option<String>,

    /// The parameters an instance gives (`spec.blueprint.parameters`), by name: an OpenAPI
    /// v3 subset (type, description, default, enum, minimum/maximum, length and pattern,
    /// array items). Unknown parameters are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub parameters: BTreeMap<String, Parameter>,

    /// The SolutionStack `spec` an instance becomes. A string that is exactly `${expr}` is
    /// replaced by the value of the CEL expression (any JSON type); `${expr}` inside a longer
    /// string by its text; `$${` is a literal `${`. Expressions see `params` (the instance's
    /// parameters, defaults applied) and `instance` (`name`, `namespace`, `labels`).
    #[schemars(schema_with = "template_schema")]
    pub template: Value,
}

fn template_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn any_value_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

fn any_values_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 64,
        "items": { "x-kubernetes-preserve-unknown-fields": true },
    })
}

/// The JSON type of a parameter (OpenAPI v3 `type`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ParameterType {
    /// Text.
    String,
    /// A whole number (64-bit).
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A list of `items`.
    Array,
}

/// One parameter of a revision (an OpenAPI v3 schema of one level; arrays hold scalars).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'array' || !has(self.items)", "message": "items is only for type: array", "fieldPath": ".items"},
    {"rule": "self.type != 'array' || has(self.items)", "message": "type: array needs items"},
    {"rule": "!has(self.minimum) || !has(self.maximum) || self.minimum <= self.maximum", "message": "minimum is above maximum", "fieldPath": ".minimum"},
    {"rule": "!has(self.minLength) || !has(self.maxLength) || self.minLength <= self.maxLength", "message": "minLength is above maxLength", "fieldPath": ".minLength"}
]))]
pub struct Parameter {
    /// JSON type of the value.
    #[serde(rename = "type")]
    pub type_: ParameterType,
    /// What the parameter sets, for people instantiating the blueprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// The instance must give it (a parameter with a `default` need not be given).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Value when the instance does not give one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value_schema")]
    pub default: Option<Value>,
    /// The only values allowed.
    #[serde(default, rename = "enum", skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "any_values_schema")]
    pub enum_: Vec<Value>,
    /// Smallest number allowed (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// Largest number allowed (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// Shortest text allowed, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1024))]
    pub min_length: Option<i32>,
    /// Longest text allowed, in characters (strings default to at most 1,024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1024))]
    pub max_length: Option<i32>,
    /// Regular expression (ECMA 262, unanchored unless it anchors itself) text must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub pattern: Option<String>,
    /// Schema of each element, for `type: array`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<ItemSchema>,
    /// Most elements allowed, for `type: array` (default and limit 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 64))]
    pub max_items: Option<i32>,
}

/// The schema of an array parameter's elements.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type != 'array'", "message": "array items are scalars (string, integer, number, boolean)", "fieldPath": ".type"}
]))]
pub struct ItemSchema {
    /// JSON type of each element (not `array`).
    #[serde(rename = "type")]
    pub type_: ParameterType,
    /// The only values allowed.
    #[serde(default, rename = "enum", skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "any_values_schema")]
    pub enum_: Vec<Value>,
    /// Smallest number allowed (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// Largest number allowed (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// Longest text allowed, in characters (default 1,024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1024))]
    pub max_length: Option<i32>,
    /// Regular expression (ECMA 262) text must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub pattern: Option<String>,
}

/// How a new revision reaches the stacks tracking a version range: waves of stacks, each
/// moving only once every stack of the wave before is Ready on the new revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// The revision the fleet moves to; default the highest published version (pre-releases
    /// aside). Setting an older version rolls back: stacks above it return to it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 5, max = 64))]
    pub version: Option<String>,
    /// True: no stack moves (a wave in progress stops where it is) until set back to false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The first wave: the tracking stacks whose labels match (none: no canary wave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<LabelSelector>,
    /// Stacks per later wave: a number, or a percentage of the tracking stacks (`"25%"`,
    /// rounded up). Default `25%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<IntOrString>,
    /// Seconds a wave stays Ready before the next starts (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86_400))]
    pub soak_seconds: Option<i32>,
    /// Seconds a wave's stacks have to become Ready on the new revision before the rollout
    /// halts (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86_400))]
    pub wave_deadline_seconds: Option<i32>,
    /// Stacks of the rollout allowed to fail (Stalled, or not Ready by the deadline) before it
    /// halts (default 0: the first failure halts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10_000))]
    pub failure_budget: Option<i32>,
}

/// Observed state of a blueprint: its revisions' checks and instances, and the rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SolutionBlueprintStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Highest published version (pre-releases aside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    /// Stacks instantiating the blueprint.
    #[serde(default)]
    pub instances: i32,
    /// Instances on the rollout's target revision.
    #[serde(default)]
    pub updated: i32,
    /// Instances Ready.
    #[serde(default)]
    pub ready: i32,
    /// Per revision: whether it checks out, and its instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<RevisionStatus>,
    /// Where the rollout stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One revision as observed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionStatus {
    /// The revision's version.
    pub version: String,
    /// False when its parameters or template do not check out (see `message`).
    pub valid: bool,
    /// Why it does not check out, naming the field (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Instances on it.
    #[serde(default)]
    pub instances: i32,
    /// Instances on it and Ready.
    #[serde(default)]
    pub ready: i32,
    /// Instances moving to it and not Ready on it yet.
    #[serde(default)]
    pub updating: i32,
    /// Instances on it Stalled.
    #[serde(default)]
    pub failed: i32,
}

/// Where a rollout stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The revision the fleet moves to.
    pub version: String,
    /// `Progressing`, `Soaking`, `Paused`, `Halted` or `Complete`.
    pub phase: String,
    /// Waves started so far (the canary wave is 1).
    #[serde(default)]
    pub wave: i32,
    /// The stacks that halted it (`namespace/name`: reason), at most 10.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// When the current wave started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_started: Option<String>,
    /// When the current wave became Ready, its soak started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_started: Option<String>,
}

/// A SolutionStack's use of a blueprint (`spec.blueprint`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintRef {
    /// Name of the SolutionBlueprint.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// An exact version (`1.4.0`: the stack stays on it), or a semver range (`^1`, `~1.4`,
    /// `>=1.2, <2`, `*`: the stack tracks it, moving only in the blueprint's rollouts).
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[0-9A-Za-z.*^~<>=, +-]+$"))]
    pub version: String,
    /// Values of the revision's parameters, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    #[schemars(schema_with = "parameters_schema")]
    pub parameters: BTreeMap<String, Value>,
}

fn parameters_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 32,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// What a stack's blueprint resolved to (`status.blueprint`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintStatus {
    /// Name of the SolutionBlueprint.
    pub name: String,
    /// The revision the stack runs (empty while none is resolved).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// `Valid`, or `Invalid` with the reason in the Stalled condition (naming the parameter).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parameters: String,
}
