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
  verbs: ["get", "list", "watch"]
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

{{/* Checks of value combinations that the schema cannot express. */}}
{{- define "citystack.validate" -}}
{{- if and .Values.azure.workloadIdentity.enabled .Values.azure.clientSecret.existingSecret }}
{{- fail "azure.workloadIdentity.enabled and azure.clientSecret.existingSecret are exclusive: choose one" }}
{{- end }}
{{- if and .Values.azure.workloadIdentity.enabled (not .Values.azure.workloadIdentity.clientId) }}
{{- fail "azure.workloadIdentity.clientId is required when azure.workloadIdentity.enabled is true" }}
{{- end }}
{{- if and .Values.azure.workloadIdentity.enabled (not .Values.serviceAccount.create) }}
{{- fail "azure.workloadIdentity needs serviceAccount.create=true (the chart annotates the ServiceAccount); or annotate your own ServiceAccount and set podLabels.\"azure.workload.identity/use\"=\"true\"" }}
{{- end }}
{{- $seen := dict }}
{{- range .Values.watchNamespaces }}
{{- if hasKey $seen . }}
{{- fail (printf "watchNamespaces lists %q twice" .) }}
{{- end }}
{{- $_ := set $seen . true }}
{{- end }}
{{- end }}
