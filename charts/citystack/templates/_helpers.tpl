{{/* Chart name, at most 63 characters. */}}
{{- define "citystack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the prefix of every object. The release name alone when it contains the chart
name (release `citystack` -> `citystack`), else `<release>-<chart>`.
*/}}
{{- define "citystack.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels: stable for the life of a release. */}}
{{- define "citystack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "citystack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "citystack.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "citystack.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: citystack
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* ServiceAccount the operator runs as. */}}
{{- define "citystack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "citystack.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Operator image reference. */}}
{{- define "citystack.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
The rules the SolutionStack controller needs in each namespace it watches (the same list as
src/permissions.rs checks at start-up). Leases are separate: only in the release namespace.
*/}}
{{- define "citystack.watchRules" -}}
- apiGroups: ["citystack.io"]
  resources: ["solutionstacks"]
  # patch: one annotation, the blueprint revision a stack that tracks a version range runs.
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["citystack.io"]
  resources: ["solutionstacks/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["citystack.io"]
  # ownerReferences with blockOwnerDeletion on the children need update on the owner's
  # finalizers subresource.
  resources: ["solutionstacks/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  # Users' bound Secrets are read (metadata by a watch, data by a GET); create/patch serve
  # only the binding Secrets the operator writes for AzureResources (server-side apply).
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["citystack.io"]
  # patch also adds and removes the Azure cleanup finalizer; create and delete serve the
  # AzureResources a stack owns for its inline Azure bindings (server-side apply, prune).
  resources: ["azureresources"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["citystack.io"]
  resources: ["azureresources/status"]
  verbs: ["patch"]
- apiGroups: ["citystack.io"]
  resources: ["azureresources/finalizers"]
  verbs: ["update"]
{{- end }}

{{/* Where the azure.caBundle ConfigMap is mounted, and the file --azure-ca-bundle reads. */}}
{{- define "citystack.caBundleDir" -}}/etc/citystack/azure-ca{{- end }}
{{- define "citystack.caBundleFile" -}}{{ include "citystack.caBundleDir" . }}/ca-bundle.pem{{- end }}

{{/*
The `citystack run` flags of the azure.* values: a flag only for a value that is set, so an
unset value leaves the operator's own default in force. Names as in src/azure/cloud.rs.
*/}}
{{- define "citystack.azureArgs" -}}
{{- with .Values.azure }}
{{- with .identity }}
- --azure-identity
- {{ . | quote }}
{{- end }}
{{- with .trustedNamespaces }}
- --trusted-namespaces
- {{ . | quote }}
{{- end }}
{{- with .subscriptionId }}
- --azure-subscription-id
- {{ . | quote }}
{{- end }}
{{- with .cloud }}
- --azure-cloud
- {{ . | quote }}
{{- end }}
{{- with .armEndpoint }}
- --azure-arm-endpoint
- {{ . | quote }}
{{- end }}
{{- with .authorityHost }}
- --azure-authority-host
- {{ . | quote }}
{{- end }}
{{- with .audience }}
- --azure-audience
- {{ . | quote }}
{{- end }}
{{- if .caBundle.configMap }}
- --azure-ca-bundle
- {{ include "citystack.caBundleFile" $ | quote }}
{{- end }}
{{- with .operationDeadlineSeconds }}
- --azure-operation-deadline
- {{ . | quote }}
{{- end }}
{{- with .resyncSeconds }}
- --azure-resync
- {{ . | quote }}
{{- end }}
{{- with .budgetPercent }}
- --azure-budget-percent
- {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Checks of value combinations that the schema cannot express. */}}
{{- define "citystack.validate" -}}
{{- $azure := .Values.azure }}
{{- $identity := $azure.identity | default "none" }}
{{- if eq $identity "workload" }}
{{- if not $azure.workloadIdentity.clientId }}
{{- fail "azure.workloadIdentity.clientId is required with azure.identity=workload" }}
{{- end }}
{{- if not .Values.serviceAccount.create }}
{{- fail "azure.identity=workload needs serviceAccount.create=true (the chart annotates the ServiceAccount); or annotate your own ServiceAccount, set podLabels.\"azure.workload.identity/use\"=\"true\" and pass --azure-identity workload in extraArgs" }}
{{- end }}
{{- else if or $azure.workloadIdentity.clientId $azure.workloadIdentity.tenantId }}
{{- fail "azure.workloadIdentity.* is used only with azure.identity=workload" }}
{{- end }}
{{- if and (eq $identity "client-secret") (not $azure.clientSecret.existingSecret) }}
{{- fail "azure.clientSecret.existingSecret is required with azure.identity=client-secret (a Secret holding AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)" }}
{{- end }}
{{- if and $azure.clientSecret.existingSecret (ne $identity "client-secret") }}
{{- fail "azure.clientSecret.existingSecret is used only with azure.identity=client-secret" }}
{{- end }}
{{- if and $azure.trustedNamespaces (eq $identity "none") }}
{{- fail "azure.trustedNamespaces has no effect without an operator identity: set azure.identity (workload, managed or client-secret)" }}
{{- end }}
{{- if and (eq $azure.cloud "custom") (not (and $azure.armEndpoint $azure.authorityHost)) }}
{{- fail "azure.cloud=custom needs azure.armEndpoint and azure.authorityHost" }}
{{- end }}
{{- $seen := dict }}
{{- range .Values.watchNamespaces }}
{{- if hasKey $seen . }}
{{- fail (printf "watchNamespaces lists %q twice" .) }}
{{- end }}
{{- $_ := set $seen . true }}
{{- end }}
{{- end }}
