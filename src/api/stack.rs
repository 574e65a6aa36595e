//! The `SolutionStack` custom resource (group `citystack.io`, version `v1alpha1`).
//!
//! Validation happens at admission, in the OpenAPI schema and CEL rules
//! (`x-kubernetes-validations`); no webhook. Every list and string is bounded so the API
//! server can bound the cost of the CEL rules. Rules that need sibling fields sit on the
//! parent and name the offending entry through `messageExpression` and `fieldPath`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, Probe, ResourceRequirements, SecurityContext, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::blueprint::{BlueprintRef, BlueprintStatus};

/// A whole partner solution in one namespace: container components plus bindings to the
/// services they consume. The operator turns it into one Deployment and (when it has ports)
/// one Service per component, named `<stack>-<component>`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "citystack.io",
    version = "v1alpha1",
    kind = "SolutionStack",
    plural = "solutionstacks",
    shortname = "stack",
    namespaced,
    status = "SolutionStackStatus",
    category = "citystack",
    doc = "A whole partner solution in one namespace: container components plus bindings to the services they consume.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready", description = "Ready components / all components"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Reason of the Ready condition"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter and ending with a letter or digit): it prefixes the Service names"),
    validation = Rule::new("!has(self.spec.components) || self.spec.components.all(c, size(self.metadata.name) + size(c.name) <= 62)")
        .message(Message::Expression("self.spec.components.map(c, size(self.metadata.name) + size(c.name) > 62, 'spec.components[' + c.name + ']: <stack name>-<component name> must fit in 63 characters (Deployment and Service names); shorten metadata.name or the component name')[0]".into()))
        .field_path(".spec.components"),
    validation = Rule::new("!has(self.spec.bindings) || self.spec.bindings.all(b, size(self.metadata.name) + size(b.name) <= 62)")
        .message(Message::Expression("self.spec.bindings.map(b, size(self.metadata.name) + size(b.name) > 62, 'spec.bindings[' + b.name + ']: <stack name>-<binding name> must fit in 63 characters; shorten metadata.name or the binding name')[0]".into()))
        .field_path(".spec.bindings"),
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.bindings) || !has(self.components) || !self.components.exists(c, self.bindings.exists(b, b.name == c.name))",
        "messageExpression": "self.bindings.map(b, self.components.exists(c, c.name == b.name), 'spec.bindings[' + b.name + ']: the name is also used by a component; names must be unique across components and bindings (dependsOn may name either)')[0]",
        "fieldPath": ".bindings"
    },
    {
        "rule": "!has(self.components) || self.components.all(c, !has(c.uses) || c.uses.all(u, has(self.bindings) && self.bindings.exists(b, b.name == u)))",
        "messageExpression": "self.components.map(c, has(c.uses) && c.uses.exists(u, !has(self.bindings) || !self.bindings.exists(b, b.name == u)), 'spec.components[' + c.name + '].uses: ' + c.uses.filter(u, !has(self.bindings) || !self.bindings.exists(b, b.name == u))[0] + ' is not the name of an entry in spec.bindings')[0]",
        "fieldPath": ".components"
    },
    {
        "rule": "!has(self.components) || self.components.all(c, !has(c.dependsOn) || c.dependsOn.all(d, self.components.exists(o, o.name == d) || (has(self.bindings) && self.bindings.exists(b, b.name == d))))",
        "messageExpression": "self.components.map(c, has(c.dependsOn) && c.dependsOn.exists(d, !self.components.exists(o, o.name == d) && (!has(self.bindings) || !self.bindings.exists(b, b.name == d))), 'spec.components[' + c.name + '].dependsOn: ' + c.dependsOn.filter(d, !self.components.exists(o, o.name == d) && (!has(self.bindings) || !self.bindings.exists(b, b.name == d)))[0] + ' is not the name of a component or binding of this stack')[0]",
        "fieldPath": ".components"
    },
    {
        "rule": "has(self.blueprint) || (has(self.components) && size(self.components) > 0)",
        "message": "spec.components: at least one component is needed, unless spec.blueprint gives them",
        "fieldPath": ".components"
    }
]))]
pub struct SolutionStackSpec {
    /// Catalog name of the solution (e.g. `smart-transport`), copied to the label
    /// `citystack.io/solution` on every child. A label value: at most 63 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), regex(pattern = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"))]
    pub solution: Option<String>,

    /// When true the operator only observes: it writes status (with a `Paused` condition) and
    /// nothing else, so children can be inspected or fixed by hand.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,

    /// Secrets (in this namespace) used to pull the components' images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<LocalRef>,

    /// The blueprint this stack instantiates: its template gives the components and bindings,
    /// and the ones listed here are added beside them (names must not clash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<BlueprintRef>,

    /// The container services of the solution; each becomes a Deployment and, when it has
    /// ports, a Service. Names are unique across components and bindings. At least one,
    /// unless `blueprint` gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub components: Vec<Component>,

    /// Services the components consume, projected into the components that list them in
    /// `uses` (servicebinding.io workload projection).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub bindings: Vec<Binding>,

    /// Defaults for the inline Azure bindings (`bindings[].azure`) that leave these unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureDefaults>,
}

/// Defaults applied to every inline Azure binding of the stack.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureDefaults {
    /// Resource group of the stack's Azure resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 90), regex(pattern = r"^[-\w\._\(\)]*[-\w_\(\)]$"))]
    pub resource_group: Option<String>,
    /// Azure region, e.g. `southeastasia`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub location: Option<String>,
    /// Subscription ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 36),
        regex(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
    )]
    pub subscription_id: Option<String>,
    /// Credential Secret (same namespace) for the stack's Azure resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ref: Option<LocalRef>,
}

/// A reference to an object in the stack's namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalRef {
    /// Name of the object (a DNS-1123 subdomain).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// One container service of the stack: a Deployment of one container and, when it has
/// ports, a Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.dependsOn) || !self.dependsOn.exists(d, d == self.name)",
        "messageExpression": "'spec.components[' + self.name + '].dependsOn must not name the component itself'",
        "fieldPath": ".dependsOn"
    },
    {
        "rule": "!has(self.ports) || self.ports.all(p, self.ports.filter(q, (has(q.servicePort) ? q.servicePort : q.port) == (has(p.servicePort) ? p.servicePort : p.port) && (has(q.protocol) ? q.protocol : 'TCP') == (has(p.protocol) ? p.protocol : 'TCP')).size() == 1)",
        "messageExpression": "'spec.components[' + self.name + '].ports: each servicePort (default: port) must be unique per protocol within the component (TCP and UDP may share a number)'",
        "fieldPath": ".ports"
    },
    {
        "rule": "!has(self.ports) || self.ports.all(p, self.ports.filter(q, q.port == p.port && (has(q.protocol) ? q.protocol : 'TCP') == (has(p.protocol) ? p.protocol : 'TCP')).size() == 1)",
        "messageExpression": "'spec.components[' + self.name + '].ports: each port (the containerPort) must be unique per protocol within the component'",
        "fieldPath": ".ports"
    },
    {
        "rule": "!has(self.readinessProbe) || [has(self.readinessProbe.httpGet), has(self.readinessProbe.tcpSocket), has(self.readinessProbe.exec), has(self.readinessProbe.grpc)].filter(x, x).size() == 1",
        "messageExpression": "'spec.components[' + self.name + '].readinessProbe needs exactly one handler: httpGet, tcpSocket, exec or grpc'",
        "fieldPath": ".readinessProbe"
    },
    {
        "rule": "!has(self.livenessProbe) || [has(self.livenessProbe.httpGet), has(self.livenessProbe.tcpSocket), has(self.livenessProbe.exec), has(self.livenessProbe.grpc)].filter(x, x).size() == 1",
        "messageExpression": "'spec.components[' + self.name + '].livenessProbe needs exactly one handler: httpGet, tcpSocket, exec or grpc'",
        "fieldPath": ".livenessProbe"
    },
    {
        "rule": "[has(self.readinessProbe) && has(self.readinessProbe.httpGet) ? self.readinessProbe.httpGet.port : 1, has(self.readinessProbe) && has(self.readinessProbe.tcpSocket) ? self.readinessProbe.tcpSocket.port : 1, has(self.livenessProbe) && has(self.livenessProbe.httpGet) ? self.livenessProbe.httpGet.port : 1, has(self.livenessProbe) && has(self.livenessProbe.tcpSocket) ? self.livenessProbe.tcpSocket.port : 1].all(port, type(port) == int ? (port >= 1 && port <= 65535) : (has(self.ports) && self.ports.exists(p, p.name == port)))",
        "messageExpression": "'spec.components[' + self.name + ']: a probe port must be a number from 1 to 65535 or the name of an entry in spec.components[' + self.name + '].ports'",
        "fieldPath": ".ports"
    },
    {
        "rule": "!has(self.securityContext) || !has(self.securityContext.privileged) || !self.securityContext.privileged",
        "messageExpression": "'spec.components[' + self.name + '].securityContext.privileged: not allowed (PodSecurity restricted)'",
        "fieldPath": ".securityContext.privileged"
    },
    {
        "rule": "!has(self.securityContext) || !has(self.securityContext.allowPrivilegeEscalation) || !self.securityContext.allowPrivilegeEscalation",
        "messageExpression": "'spec.components[' + self.name + '].securityContext.allowPrivilegeEscalation: must be false (PodSecurity restricted)'",
        "fieldPath": ".securityContext.allowPrivilegeEscalation"
    },
    {
        "rule": "!has(self.securityContext) || ((!has(self.securityContext.runAsNonRoot) || self.securityContext.runAsNonRoot) && (!has(self.securityContext.runAsUser) || self.securityContext.runAsUser != 0))",
        "messageExpression": "'spec.components[' + self.name + '].securityContext: runAsNonRoot must not be false and runAsUser must not be 0 (PodSecurity restricted)'",
        "fieldPath": ".securityContext"
    },
    {
        "rule": "!has(self.securityContext) || !has(self.securityContext.capabilities) || !has(self.securityContext.capabilities.add) || size(self.securityContext.capabilities.add) == 0 || (size(self.securityContext.capabilities.add) == 1 && self.securityContext.capabilities.add[0] == 'NET_BIND_SERVICE')",
        "messageExpression": "'spec.components[' + self.name + '].securityContext.capabilities.add: only NET_BIND_SERVICE may be added (PodSecurity restricted)'",
        "fieldPath": ".securityContext.capabilities.add"
    },
    {
        "rule": "!has(self.securityContext) || !has(self.securityContext.seccompProfile) || self.securityContext.seccompProfile.type in ['RuntimeDefault', 'Localhost']",
        "messageExpression": "'spec.components[' + self.name + '].securityContext.seccompProfile.type: must be RuntimeDefault or Localhost (PodSecurity restricted)'",
        "fieldPath": ".securityContext.seccompProfile.type"
    },
    {
        "rule": "!has(self.tolerations) || self.tolerations.all(t, !has(t.operator) || t.operator in ['Exists', 'Equal'])",
        "messageExpression": "'spec.components[' + self.name + '].tolerations: operator must be Exists or Equal'",
        "fieldPath": ".tolerations"
    },
    {
        "rule": "!has(self.tolerations) || self.tolerations.all(t, !has(t.operator) || t.operator != 'Exists' || !has(t.value) || t.value == '')",
        "messageExpression": "'spec.components[' + self.name + '].tolerations: a toleration with operator Exists must have no value'",
        "fieldPath": ".tolerations"
    },
    {
        "rule": "!has(self.tolerations) || self.tolerations.all(t, (has(t.key) && t.key != '') || (has(t.operator) && t.operator == 'Exists'))",
        "messageExpression": "'spec.components[' + self.name + '].tolerations: a toleration without key must have operator Exists'",
        "fieldPath": ".tolerations"
    },
    {
        "rule": "!has(self.tolerations) || self.tolerations.all(t, !has(t.effect) || t.effect in ['', 'NoSchedule', 'PreferNoSchedule', 'NoExecute'])",
        "messageExpression": "'spec.components[' + self.name + '].tolerations: effect must be NoSchedule, PreferNoSchedule or NoExecute'",
        "fieldPath": ".tolerations"
    },
    {
        "rule": "!has(self.tolerations) || self.tolerations.all(t, !has(t.tolerationSeconds) || (has(t.effect) && t.effect == 'NoExecute'))",
        "messageExpression": "'spec.components[' + self.name + '].tolerations: tolerationSeconds needs effect NoExecute'",
        "fieldPath": ".tolerations"
    },
    {
        "rule": "!has(self.nodeSelector) || self.nodeSelector.all(k, k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",
        "messageExpression": "'spec.components[' + self.name + '].nodeSelector: keys must be label keys ([DNS subdomain/]name, the name at most 63 letters, digits, -, _ or .)'",
        "fieldPath": ".nodeSelector"
    },
    {
        "rule": "!has(self.env) || !has(self.uses) || size(self.uses) == 0 || !self.env.exists(e, e.name == 'SERVICE_BINDING_ROOT')",
        "messageExpression": "'spec.components[' + self.name + '].env: SERVICE_BINDING_ROOT is set by citystack for a component that uses bindings (servicebinding.io)'",
        "fieldPath": ".env"
    },
    {
        "rule": "!has(self.expose) || self.expose == 'None' || (has(self.ports) && size(self.ports) > 0)",
        "messageExpression": "'spec.components[' + self.name + '].expose: ' + self.expose + ' needs at least one entry in ports (or set expose: None)'",
        "fieldPath": ".expose"
    }
]))]
pub struct Component {
    /// Component name: a DNS-1035 label, unique across components and bindings. The
    /// Deployment and Service are named `<stack>-<name>`.
    #[schemars(length(min = 1, max = 62), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// Container image reference, e.g. `registry.example/traffic-ingest:1.4.2`: the
    /// distribution reference grammar (`[host[:port]/]path[:tag][@digest]`, path components in
    /// lower case).
    #[schemars(
        length(min = 1, max = 512),
        regex(
            pattern = r"^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*(:[0-9]+)?/)?[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
        )
    )]
    pub image: String,

    /// Desired pod count. When unset the operator does not own the field, so a
    /// HorizontalPodAutoscaler or a person can scale the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Entrypoint (the container's `command`); the image's ENTRYPOINT when unset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,

    /// Arguments to the entrypoint (the container's `args`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), inner(length(max = 4096)))]
    pub args: Vec<String>,

    /// Ports the container listens on; the Service exposes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Vec<Port>,

    /// Environment variables (core/v1 EnvVar), after the binding variables. Names are unique
    /// (a Deployment with a repeated name is refused by the API server).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub env: Vec<EnvVar>,

    /// Sources of environment variables (core/v1 EnvFromSource).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub env_from: Vec<EnvFromSource>,

    /// Compute resources (core/v1 ResourceRequirements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Readiness probe (core/v1 Probe); a named port in `httpGet.port` refers to `ports`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,

    /// Liveness probe (core/v1 Probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,

    /// Container security context (core/v1 SecurityContext). Fields set here override the
    /// defaults, which satisfy the PodSecurity "restricted" profile: runAsNonRoot,
    /// allowPrivilegeEscalation false, capabilities drop ALL, seccomp RuntimeDefault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,

    /// Node labels the pods must match (pod `nodeSelector`): label keys (`[prefix/]name`) and
    /// label values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"}))]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the pods (core/v1 Toleration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,

    /// How the Service is exposed: `ClusterIP` (default when there are ports), `NodePort`,
    /// `LoadBalancer`, or `None` (no Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<Expose>,

    /// Bindings (names in `spec.bindings`) projected into this component's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 62)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub uses: Vec<String>,

    /// Components or bindings that must be Ready before this component is created or its pod
    /// template changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 62)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub depends_on: Vec<String>,
}

/// A port the container listens on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.name.matches('[a-z]') && !self.name.contains('--')",
        "messageExpression": "'ports[].name ' + self.name + ' must be an IANA service name: at most 15 lowercase letters, digits and single hyphens, with at least one letter'",
        "fieldPath": ".name"
    }
]))]
pub struct Port {
    /// Port name, an IANA service name (RFC 6335): at most 15 characters; probes and the
    /// Service's targetPort refer to it.
    #[schemars(length(min = 1, max = 15), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Container port number.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Port of the Service; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub service_port: Option<i32>,
    /// Transport protocol; defaults to TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

impl Port {
    /// The Service port: `servicePort`, else `port`.
    pub fn effective_service_port(&self) -> i32 {
        self.service_port.unwrap_or(self.port)
    }
}

/// Transport protocol of a port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum Protocol {
    /// TCP (default).
    #[default]
    TCP,
    /// UDP.
    UDP,
    /// SCTP.
    SCTP,
}

impl Protocol {
    /// The core/v1 protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
            Protocol::SCTP => "SCTP",
        }
    }
}

/// How a component's Service is exposed (the core/v1 Service `type`, or no Service).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Expose {
    /// A cluster-internal virtual IP.
    ClusterIP,
    /// ClusterIP plus a port on every node.
    NodePort,
    /// NodePort plus a cloud load balancer.
    LoadBalancer,
    /// No Service at all.
    None,
}

impl Expose {
    /// The Service type, or `None` when no Service is wanted.
    pub fn service_type(self) -> Option<&'static str> {
        match self {
            Expose::ClusterIP => Some("ClusterIP"),
            Expose::NodePort => Some("NodePort"),
            Expose::LoadBalancer => Some("LoadBalancer"),
            Expose::None => None,
        }
    }
}

/// A service the components consume. Exactly one source is set; the bound Secret is
/// projected per servicebinding.io (Workload Projection): mounted at
/// `$SERVICE_BINDING_ROOT/<name>`, and the keys listed in `env` also as variables.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.secretRef), has(self.azure), has(self.azureResourceRef)].filter(x, x).size() == 1",
        "messageExpression": "'spec.bindings[' + self.name + ']: a binding needs exactly one source: secretRef, azure or azureResourceRef'"
    },
    {
        "rule": "!has(self.env) || !self.env.exists(v, v.name == 'SERVICE_BINDING_ROOT')",
        "messageExpression": "'spec.bindings[' + self.name + '].env: SERVICE_BINDING_ROOT is set by citystack (servicebinding.io); map the key to another name'",
        "fieldPath": ".env"
    }
]))]
pub struct Binding {
    /// Binding name: a DNS-1035 label, unique across components and bindings; the mount
    /// folder under `/bindings`.
    #[schemars(length(min = 1, max = 62), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// Bring your own Secret (same namespace), holding servicebinding.io keys such as `type`,
    /// `provider`, `host`, `username`, `password`. Mounted directly, never copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalRef>,

    /// An Azure resource provisioned for this stack: the stack owns a child AzureResource
    /// named `<stack>-<binding>` with this spec (defaults from `spec.azure`), and binds its
    /// binding Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<crate::api::AzureResourceSpec>,

    /// An existing AzureResource in this namespace whose binding Secret to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_resource_ref: Option<LocalRef>,

    /// Keys of the bound Secret to also inject as environment variables into every component
    /// that uses this binding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub env: Vec<BindingEnv>,
}

/// One environment variable taken from a key of the bound Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct BindingEnv {
    /// Variable name (a C identifier), e.g. `DB_HOST`.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// Key in the bound Secret, e.g. `host`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Observed state of a stack, kstatus-compatible: `observedGeneration` and the `Ready`,
/// `Reconciling` and `Stalled` conditions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SolutionStackStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling`, `Stalled`, and `Paused` when paused. Ready=False always comes
    /// with Reconciling=True (progressing or retrying) or Stalled=True (needs a change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Ready components out of all components, e.g. `2/3` (the READY column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,

    /// One entry per component, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,

    /// One entry per binding, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<BindingStatus>,

    /// The blueprint revision the stack runs and whether its parameters check out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<BlueprintStatus>,
}

/// Observed state of one component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Component name.
    pub name: String,
    /// Summary state.
    pub state: ComponentState,
    /// Why the component is not Ready, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Components or bindings this component waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// Pods of the Deployment (`status.replicas`).
    pub replicas: i32,
    /// Ready pods.
    pub ready_replicas: i32,
    /// Pods at the current pod template.
    pub updated_replicas: i32,
    /// DNS name of the Service, `<service>.<namespace>.svc`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// Summary state of a component.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ComponentState {
    /// The Deployment's current generation is rolled out and available.
    Ready,
    /// Rolling out.
    #[default]
    Progressing,
    /// Held back until its dependencies or bindings are Ready.
    Waiting,
    /// Needs a change (e.g. its rollout exceeded progressDeadlineSeconds, or the API server
    /// refuses one of its children).
    Failed,
    /// A child's name is taken by an object another owner controls; nothing of it is written.
    Conflict,
}

/// Observed state of one binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingStatus {
    /// Binding name.
    pub name: String,
    /// Where the data comes from: `secretRef`.
    pub source: String,
    /// The Secret projected into the workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Whether the bound Secret exists with every key the binding needs.
    pub ready: bool,
    /// Why it is not ready (an error category), when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Detail, when not ready. Never contains Secret values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
