{{/*
Names and labels shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "cohort.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name: fullnameOverride, else the release name when it
already contains the chart name, else "<release>-<chart>". 63 characters at
most (DNS label).
*/}}
{{- define "cohort.fullname" -}}
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

{{/* The operator's objects: "<fullname>-operator". */}}
{{- define "cohort.operator.fullname" -}}
{{- printf "%s-operator" (include "cohort.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "cohort.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "cohort.labels" -}}
helm.sh/chart: {{ include "cohort.chart" . }}
{{ include "cohort.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cohort
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that identify the release (stable across upgrades). */}}
{{- define "cohort.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cohort.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the operator's objects. */}}
{{- define "cohort.operator.labels" -}}
{{ include "cohort.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Selector labels of the operator's pods. The operator is told these
(--operator-pod-labels) so the NetworkPolicies it writes open the workers'
control port to exactly these pods.
*/}}
{{- define "cohort.operator.selectorLabels" -}}
{{ include "cohort.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The same selector labels as one "k=v,k=v" flag value. */}}
{{- define "cohort.operator.selectorLabelsFlag" -}}
{{- $pairs := list }}
{{- range $k, $v := (include "cohort.operator.selectorLabels" . | fromYaml) }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," (sortAlpha $pairs) }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "cohort.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cohort.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The leader-election Lease's name. */}}
{{- define "cohort.leaseName" -}}
{{- default (include "cohort.operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
An image reference from {registry, repository, tag, digest}; the tag
defaults to the chart's appVersion, and a digest wins over the tag.
Call with (dict "image" .Values.x.image "context" $).
*/}}
{{- define "cohort.image" -}}
{{- $img := .image }}
{{- $repo := $img.repository }}
{{- if $img.registry }}
{{- $repo = printf "%s/%s" $img.registry $img.repository }}
{{- end }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .context.Chart.AppVersion $img.tag | toString) }}
{{- end }}
{{- end }}

{{/* The MpcCluster created from values: its name defaults to the federation. */}}
{{- define "cohort.mpcClusterName" -}}
{{- $spec := .Values.mpcCluster.spec | default dict }}
{{- default (default "cohort" $spec.federation) .Values.mpcCluster.name }}
{{- end }}
