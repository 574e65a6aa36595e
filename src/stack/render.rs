//! Render: spec + resolved bindings → desired children. Pure and deterministic: components
//! in name order, maps sorted, so equal input gives byte-identical output.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, LocalObjectReference, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde_json::Value;

use crate::api::{Component, Expose, SolutionStack};
use crate::binding::{self, ResolvedBinding};
use crate::error::{Error, Result};
use crate::naming::{self, BINDING_HASH_ANNOTATION, DESIRED_HASH_ANNOTATION};

/// Kind of a child object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChildKind {
    /// apps/v1 Deployment.
    Deployment,
    /// core/v1 Service.
    Service,
    /// citystack.io/v1alpha1 AzureResource (an inline Azure binding).
    AzureResource,
}

impl ChildKind {
    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Deployment => "Deployment",
            ChildKind::Service => "Service",
            ChildKind::AzureResource => "AzureResource",
        }
    }
}

/// One desired child object, as the JSON sent with server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredChild {
    /// Deployment or Service.
    pub kind: ChildKind,
    /// Object name, `<stack>-<component>`.
    pub name: String,
    /// The component it belongs to (for an AzureResource: the binding).
    pub component: String,
    /// The full object, with `apiVersion`, `kind` and the desired-hash annotation.
    pub object: Value,
}

/// Renders every component of `stack` into its Deployment and (when it has ports and
/// `expose` is not `None`) its Service, in component-name order, then every inline Azure
/// binding into an AzureResource `<stack>-<binding>`, in binding-name order.
///
/// `owner` is the ownerReference to set (absent offline, where the stack has no UID).
/// Bindings missing from `resolved` are left out of the projection; callers hold such
/// components back rather than roll them out.
///
/// Errors: `Serialization` only if an object cannot be encoded (a bug).
pub fn render(
    stack: &SolutionStack,
    owner: Option<&OwnerReference>,
    resolved: &BTreeMap<String, ResolvedBinding>,
) -> Result<Vec<DesiredChild>> {
    let mut components: Vec<&Component> = stack.spec.components.iter().collect();
    components.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for component in components {
        let name = naming::child_name(&stack.name_any(), &component.name);
        let deployment = render_deployment(stack, component, owner, resolved);
        out.push(child(ChildKind::Deployment, name.clone(), &component.name, &deployment)?);
        if let Some(service) = render_service(stack, component, owner) {
            out.push(child(ChildKind::Service, name, &component.name, &service)?);
        }
    }
    let mut bindings: Vec<_> = stack.spec.bindings.iter().filter(|b| b.azure.is_some()).collect();
    bindings.sort_by(|a, b| a.name.cmp(&b.name));
    for binding in bindings {
        let name = naming::child_name(&stack.name_any(), &binding.name);
        let resource = render_azure(stack, binding, owner);
        out.push(child(ChildKind::AzureResource, name, &binding.name, &resource)?);
    }
    Ok(out)
}

/// An inline Azure binding's AzureResource: the binding's spec with the stack's
/// `spec.azure` defaults filled in.
fn render_azure(stack: &SolutionStack, binding: &crate::api::Binding, owner: Option<&OwnerReference>) -> Value {
    let mut spec = binding.azure.clone().unwrap_or_else(|| crate::api::AzureResourceSpec {
        kind: crate::api::AzureKind::Generic,
        mode: Default::default(),
        name: None,
        subscription_id: None,
        resource_group: None,
        location: None,
        sku: None,
        tags: Default::default(),
        properties: None,
        containers: vec![],
        queues: vec![],
        databases: vec![],
        hubs: vec![],
        generic: None,
        password_secret_ref: None,
        deletion_policy: None,
        credential_ref: None,
    });
    if let Some(defaults) = &stack.spec.azure {
        spec.resource_group = spec.resource_group.or(defaults.resource_group.clone());
        spec.location = spec.location.or(defaults.location.clone());
        spec.subscription_id = spec.subscription_id.or(defaults.subscription_id.clone());
        spec.credential_ref = spec.credential_ref.or(defaults.credential_ref.clone());
    }
    let stack_name = stack.name_any();
    serde_json::json!({
        "apiVersion": "citystack.io/v1alpha1",
        "kind": "AzureResource",
        "metadata": {
            "name": naming::child_name(&stack_name, &binding.name),
            "namespace": stack.namespace(),
            "labels": child_labels(stack, &binding.name, owner),
            "annotations": {},
            "ownerReferences": owner.map(|o| vec![o.clone()]).unwrap_or_default(),
        },
        "spec": spec,
    })
}

fn child<T: serde::Serialize>(kind: ChildKind, name: String, owner_entry: &str, object: &T) -> Result<DesiredChild> {
    let mut object =
        serde_json::to_value(object).map_err(|e| Error::encoding(format!("{} {name}", kind.as_str()), e))?;
    // The hash covers everything we set; serde_json maps are sorted, so it is stable.
    let hash = naming::short_hash(object.to_string().as_bytes());
    if let Some(annotations) = object.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.insert(DESIRED_HASH_ANNOTATION.into(), Value::String(hash));
    }
    Ok(DesiredChild { kind, name, component: owner_entry.to_owned(), object })
}

/// A child's own labels: its component's, and the shard bucket of its owner (the stack) when
/// there is one. Pods do not get the bucket: it is not theirs to select by, and adding it to
/// the template would roll every pod.
fn child_labels(stack: &SolutionStack, component: &str, owner: Option<&OwnerReference>) -> BTreeMap<String, String> {
    let mut labels = naming::component_labels(&stack.name_any(), component, stack.spec.solution.as_deref());
    if let Some(owner) = owner {
        labels.insert(naming::SHARD_BUCKET_LABEL.into(), crate::shard::ring::bucket_label(&owner.uid));
    }
    labels
}

fn metadata(stack: &SolutionStack, component: &Component, owner: Option<&OwnerReference>) -> ObjectMeta {
    let stack_name = stack.name_any();
    ObjectMeta {
        name: Some(naming::child_name(&stack_name, &component.name)),
        namespace: stack.namespace(),
        labels: Some(child_labels(stack, &component.name, owner)),
        annotations: Some(BTreeMap::new()),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..Default::default()
    }
}

fn render_deployment(
    stack: &SolutionStack,
    component: &Component,
    owner: Option<&OwnerReference>,
    resolved: &BTreeMap<String, ResolvedBinding>,
) -> Deployment {
    let stack_name = stack.name_any();
    let projection = binding::project(&component.uses, &stack.spec.bindings, resolved);
    let mut env = projection.env;
    env.extend(component.env.iter().cloned());
    let container = Container {
        name: component.name.clone(),
        image: Some(component.image.clone()),
        command: non_empty(component.command.clone()),
        args: non_empty(component.args.clone()),
        ports: non_empty(
            component
                .ports
                .iter()
                .map(|p| ContainerPort {
                    name: Some(p.name.clone()),
                    container_port: p.port,
                    protocol: Some(p.protocol.unwrap_or_default().as_str().into()),
                    ..Default::default()
                })
                .collect(),
        ),
        env: non_empty(env),
        env_from: non_empty(component.env_from.clone()),
        resources: component.resources.clone(),
        readiness_probe: component.readiness_probe.clone(),
        liveness_probe: component.liveness_probe.clone(),
        security_context: Some(container_security(component.security_context.as_ref())),
        volume_mounts: non_empty(projection.mounts),
        ..Default::default()
    };
    let annotations = projection.hash.map(|h| BTreeMap::from([(BINDING_HASH_ANNOTATION.to_owned(), h)]));
    let pod = PodSpec {
        containers: vec![container],
        image_pull_secrets: non_empty(
            stack.spec.image_pull_secrets.iter().map(|s| LocalObjectReference { name: s.name.clone() }).collect(),
        ),
        node_selector: (!component.node_selector.is_empty()).then(|| component.node_selector.clone()),
        tolerations: non_empty(component.tolerations.clone()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
            ..Default::default()
        }),
        volumes: non_empty(projection.volumes),
        ..Default::default()
    };
    Deployment {
        metadata: metadata(stack, component, owner),
        spec: Some(DeploymentSpec {
            replicas: component.replicas,
            selector: LabelSelector {
                match_labels: Some(naming::selector_labels(&stack_name, &component.name)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(naming::component_labels(
                        &stack_name,
                        &component.name,
                        stack.spec.solution.as_deref(),
                    )),
                    annotations,
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The PodSecurity "restricted" defaults, with every field the component sets taking over.
fn container_security(overrides: Option<&SecurityContext>) -> SecurityContext {
    let mut security = SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..Default::default()
    };
    if let Some(o) = overrides {
        macro_rules! take {
            ($($field:ident),*) => { $( if o.$field.is_some() { security.$field = o.$field.clone(); } )* };
        }
        take!(
            allow_privilege_escalation,
            app_armor_profile,
            capabilities,
            privileged,
            proc_mount,
            read_only_root_filesystem,
            run_as_group,
            run_as_non_root,
            run_as_user,
            se_linux_options,
            seccomp_profile,
            windows_options
        );
    }
    security
}

fn render_service(stack: &SolutionStack, component: &Component, owner: Option<&OwnerReference>) -> Option<Service> {
    if component.ports.is_empty() {
        return None;
    }
    let type_ = component.expose.unwrap_or(Expose::ClusterIP).service_type()?;
    let stack_name = stack.name_any();
    let mut ports: Vec<ServicePort> = component
        .ports
        .iter()
        .map(|p| ServicePort {
            name: Some(p.name.clone()),
            port: p.effective_service_port(),
            target_port: Some(IntOrString::String(p.name.clone())),
            protocol: Some(p.protocol.unwrap_or_default().as_str().into()),
            ..Default::default()
        })
        .collect();
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Service {
        metadata: metadata(stack, component, owner),
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(naming::selector_labels(&stack_name, &component.name)),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    })
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

/// The children as a multi-document YAML stream (what `citystack render` prints).
///
/// Errors: `Serialization` if YAML encoding fails (a bug).
pub fn to_yaml(children: &[DesiredChild]) -> Result<String> {
    let mut out = String::new();
    for child in children {
        out.push_str("---\n");
        let yaml = serde_yaml_ng::to_string(&child.object)
            .map_err(|e| Error::encoding(format!("{} {}", child.kind.as_str(), child.name), e))?;
        out.push_str(&yaml);
    }
    Ok(out)
}

/// Renders, offline, every `SolutionStack` document of a YAML stream, expanded from the
/// `SolutionBlueprint` documents of the stream when it names one (other kinds are skipped):
/// what `citystack render -f` prints. Bound Secrets (for Azure bindings, the
/// AzureResource's `<name>-binding`) are assumed present; their data is unknown, so pod
/// templates carry no binding hash.
///
/// Errors: a message naming the document that is not valid YAML or not a valid stack, or the
/// dependency cycle found.
pub fn render_documents(text: &str) -> std::result::Result<String, String> {
    let mut documents = crate::blueprint::offline::Documents::default();
    documents.read("input", text)?;
    crate::blueprint::offline::render(&documents)
}

/// The children `stack` (a plain stack, or one already expanded from its blueprint) renders
/// to offline, as [`render_documents`] describes.
///
/// Errors: the spec is invalid (`validate`), or rendering fails.
pub fn offline(stack: &SolutionStack) -> std::result::Result<Vec<DesiredChild>, String> {
    super::validate::validate(&stack.spec).map_err(|e| format!("SolutionStack {}: {e}", stack.name_any()))?;
    let resolved = stack
        .spec
        .bindings
        .iter()
        .filter_map(|b| {
            // Azure bindings resolve to their AzureResource's binding Secret.
            let secret = match &b.secret_ref {
                Some(secret) => secret.name.clone(),
                None => naming::binding_secret_name(&super::resolve::azure_resource_name(stack, b)?),
            };
            Some((b.name.clone(), ResolvedBinding { name: b.name.clone(), secret_name: secret, data_hash: None }))
        })
        .collect();
    render(stack, None, &resolved).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(text: &str) -> String {
        render_documents(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn smart_transport_snapshot() {
        insta::assert_snapshot!(example(include_str!("../../examples/smart-transport.yaml")));
    }

    #[test]
    fn smart_education_snapshot() {
        insta::assert_snapshot!(example(include_str!("../../examples/smart-education.yaml")));
    }

    #[test]
    fn smart_health_snapshot() {
        insta::assert_snapshot!(example(include_str!("../../examples/smart-health.yaml")));
    }

    #[test]
    fn renders_are_byte_identical() {
        let text = include_str!("../../examples/smart-transport.yaml");
        assert_eq!(example(text), example(text));
    }

    #[test]
    fn component_order_in_spec_does_not_matter() {
        let a = "apiVersion: citystack.io/v1alpha1\nkind: SolutionStack\nmetadata: {name: s}\nspec:\n  components:\n  - {name: a, image: x}\n  - {name: b, image: y}\n";
        let b = "apiVersion: citystack.io/v1alpha1\nkind: SolutionStack\nmetadata: {name: s}\nspec:\n  components:\n  - {name: b, image: y}\n  - {name: a, image: x}\n";
        assert_eq!(example(a), example(b));
    }

    #[test]
    fn security_context_overrides_field_by_field() {
        let text = "apiVersion: citystack.io/v1alpha1\nkind: SolutionStack\nmetadata: {name: s}\nspec:\n  components:\n  - {name: a, image: x, securityContext: {runAsUser: 1000, readOnlyRootFilesystem: true}}\n";
        let out = example(text);
        assert!(out.contains("runAsUser: 1000"));
        assert!(out.contains("readOnlyRootFilesystem: true"));
        assert!(out.contains("allowPrivilegeEscalation: false"), "defaults stay: {out}");
    }

    #[test]
    fn unset_replicas_are_not_owned_and_no_ports_means_no_service() {
        let text = "apiVersion: citystack.io/v1alpha1\nkind: SolutionStack\nmetadata: {name: s}\nspec:\n  components:\n  - {name: a, image: x}\n";
        let out = example(text);
        assert!(!out.contains("replicas"), "{out}");
        assert!(!out.contains("kind: Service"), "{out}");
    }

    #[test]
    fn cycles_are_refused_offline() {
        let text = "apiVersion: citystack.io/v1alpha1\nkind: SolutionStack\nmetadata: {name: s}\nspec:\n  components:\n  - {name: a, image: x, dependsOn: [b]}\n  - {name: b, image: x, dependsOn: [a]}\n";
        let error = render_documents(text).err().unwrap_or_default();
        assert!(error.contains("a -> b -> a"), "{error}");
    }

    #[test]
    fn owned_children_carry_their_stacks_shard_bucket_and_pods_do_not() {
        let text = "apiVersion: citystack.io/v1alpha1\nkind: SolutionStack\nmetadata: {name: s, namespace: n}\nspec:\n  components:\n  - {name: a, image: x, ports: [{name: http, port: 80}]}\n  bindings:\n  - {name: q, azure: {kind: StorageAccount}}\n";
        let stack: SolutionStack = serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let owner = OwnerReference { uid: "a".into(), ..Default::default() };
        let children = render(&stack, Some(&owner), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(children.len(), 3);
        for child in &children {
            let bucket = child.object.pointer("/metadata/labels/citystack.io~1shard-bucket");
            assert_eq!(bucket.and_then(Value::as_str), Some("af"), "{:?} {}", child.kind, child.name);
        }
        let template = children[0].object.pointer("/spec/template/metadata/labels").cloned().unwrap_or_default();
        assert!(template.get(naming::SHARD_BUCKET_LABEL).is_none(), "{template}");
        let offline = render(&stack, None, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
        assert!(offline.iter().all(|c| c.object.pointer("/metadata/labels/citystack.io~1shard-bucket").is_none()));
    }
}
