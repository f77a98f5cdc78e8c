{{/*
The chart's name, for the app.kubernetes.io/name label.
*/}}
{{- define "slurm-reconciler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects. Kubernetes names of some kinds are DNS labels, hence
63 characters at most.
*/}}
{{- define "slurm-reconciler.fullname" -}}
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

{{- define "slurm-reconciler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object the chart renders.
*/}}
{{- define "slurm-reconciler.labels" -}}
helm.sh/chart: {{ include "slurm-reconciler.chart" . }}
{{ include "slurm-reconciler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that pick the operator's pods; they must never change between upgrades, since a
Deployment's selector is immutable.
*/}}
{{- define "slurm-reconciler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slurm-reconciler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "slurm-reconciler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "slurm-reconciler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "slurm-reconciler.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The one namespace the operator watches when watch.allNamespaces is false.
*/}}
{{- define "slurm-reconciler.watchNamespace" -}}
{{- default .Release.Namespace .Values.watch.namespace }}
{{- end }}

{{/*
Where SlurmClusters and SSH Secrets from values go unless an entry names its own namespace:
the watched namespace, so the operator sees them; the release namespace when it watches all.
*/}}
{{- define "slurm-reconciler.resourceNamespace" -}}
{{- if .Values.watch.allNamespaces }}
{{- .Release.Namespace }}
{{- else }}
{{- include "slurm-reconciler.watchNamespace" . }}
{{- end }}
{{- end }}

{{/*
The operator's permissions: exactly the rules of reconciler/kube/permissions.py (RULES), in
the same order, one resource per rule, but for Secrets, which secret-access.yaml grants by name
in their own namespaces. The Role or ClusterRole grants these and nothing else;
tests/unit/test_chart.py fails when the lists differ.
*/}}
{{- define "slurm-reconciler.rules" -}}
# Desired state comes from the informers (list, then watch); the finalizer and the pinned
# approve annotation are JSON patches of the object.
- apiGroups: ["hpc.reconciler.dev"]
  resources: ["workflows"]
  verbs: ["list", "watch", "patch"]
# Status: server-side apply (and the merge patch removing fields another writer left).
- apiGroups: ["hpc.reconciler.dev"]
  resources: ["workflows/status"]
  verbs: ["patch"]
- apiGroups: ["hpc.reconciler.dev"]
  resources: ["workflowtemplates"]
  verbs: ["list", "watch"]
- apiGroups: ["hpc.reconciler.dev"]
  resources: ["slurmclusters"]
  verbs: ["list", "watch"]
- apiGroups: ["hpc.reconciler.dev"]
  resources: ["slurmclusters/status"]
  verbs: ["patch"]
# Task inputs from ConfigMaps, read by name.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# Each event is a new object: nothing is counted up in an existing one.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{ include "slurm-reconciler.leaseRule" . }}
{{- end }}

{{/*
Leader election: the replicas take turns holding a Lease in the release namespace.
*/}}
{{- define "slurm-reconciler.leaseRule" -}}
# Leader election.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}
