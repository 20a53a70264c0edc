{{/*
Names, labels and the small computations every template shares.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "qrank.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every resource: fullnameOverride, else `<release>-<name>`, or just the
release name when it already contains the chart name. Truncated to 63 characters (DNS labels).
*/}}
{{- define "qrank.fullname" -}}
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

{{/* `<chart>-<version>` for the helm.sh/chart label. */}}
{{- define "qrank.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the pods; they never change over the release's life. */}}
{{- define "qrank.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qrank.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The standard labels of every resource. */}}
{{- define "qrank.labels" -}}
helm.sh/chart: {{ include "qrank.chart" . }}
{{ include "qrank.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: ranker
app.kubernetes.io/part-of: qrank
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "qrank.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "qrank.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the AMQP URL and the object-store credentials. */}}
{{- define "qrank.secretName" -}}
{{- default (include "qrank.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
The image: repository, then the tag (default `<appVersion>-cuda` or `<appVersion>-cpu`, the
Dockerfile's two targets), then the digest when one is set.
*/}}
{{- define "qrank.image" -}}
{{- $variant := ternary "cuda" "cpu" .Values.gpu.enabled }}
{{- $tag := default (printf "%s-%s" .Chart.AppVersion $variant) .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The HTTP port, taken from `config.http.listen` (`host:port`, or `[v6]:port`), so the container
port, the Service, the probes and the monitors always agree with what the service binds.
*/}}
{{- define "qrank.httpPort" -}}
{{- $listen := .Values.config.http.listen | toString }}
{{- $port := splitList ":" $listen | last }}
{{- if not (regexMatch "^[0-9]+$" $port) }}
{{- fail (printf "config.http.listen must be host:port, got %q" $listen) }}
{{- end }}
{{- if or (lt (atoi $port) 1) (gt (atoi $port) 65535) }}
{{- fail (printf "config.http.listen: the port must be 1 to 65535 (0 picks a random port, which probes cannot find), got %q" $listen) }}
{{- end }}
{{- atoi $port }}
{{- end }}

{{/* HF_HOME: inside the cache volume, where the model volume is mounted when enabled. */}}
{{- define "qrank.hfHome" -}}
{{- printf "%s/huggingface" (trimSuffix "/" .Values.cache.mountPath) }}
{{- end }}

{{/*
One TOML value from a values scalar. YAML numbers reach templates as float64, so whole numbers
are printed as integers (the service's float keys accept integers too); strings are JSON-quoted,
which is valid TOML basic-string syntax.
*/}}
{{- define "qrank.tomlValue" -}}
{{- $v := . }}
{{- $kind := kindOf $v }}
{{- if eq $kind "bool" }}
{{- $v }}
{{- else if or (eq $kind "float64") (eq $kind "int") (eq $kind "int64") }}
{{- if eq (float64 $v) (floor $v) }}
{{- int64 $v }}
{{- else }}
{{- $v }}
{{- end }}
{{- else if eq $kind "string" }}
{{- toJson $v }}
{{- else }}
{{- fail (printf "config: only strings, numbers and booleans are supported, got %s %v" $kind $v) }}
{{- end }}
{{- end }}

{{/*
`qrank.toml`: one table per section of `config`, keys in order, `null` keys left out. The broker
URL is refused here, since it holds a password: it belongs in the Secret.
*/}}
{{- define "qrank.configToml" -}}
{{- if hasKey (.Values.config.amqp | default dict) "url" }}
{{- fail "config.amqp.url must not be set: the broker URL holds a password; set secrets.amqpUrl or secrets.existingSecret" }}
{{- end }}
# qrank.toml, rendered by the {{ include "qrank.chart" . }} chart from its `config` values.
# Every key can be overridden by QRANK_<SECTION>__<KEY>; QRANK_AMQP__URL comes from a Secret.
{{- $config := deepCopy .Values.config }}
{{- /* A GPU pod runs the model on its GPUs, all of them; one that got none fails at start. */ -}}
{{- if and .Values.gpu.enabled (kindIs "map" $config.model) (not $config.model.device) }}
{{- $_ := set $config.model "device" "cuda" }}
{{- end }}
{{- range $section, $keys := $config }}
{{- if not (kindIs "map" $keys) }}
{{- fail (printf "config.%s must be a section (a map of keys)" $section) }}
{{- end }}

[{{ $section }}]
{{- range $key, $value := $keys }}
{{- if not (kindIs "invalid" $value) }}
{{ $key }} = {{ include "qrank.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Object-store settings for the qrank container and the model download: the credentials from the
Secret (optional keys, so a workload identity can stand in), the rest from values.
*/}}
{{- define "qrank.objectStoreEnv" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "qrank.secretName" . }}
      key: {{ .Values.secrets.keys.accessKeyId }}
      optional: true
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "qrank.secretName" . }}
      key: {{ .Values.secrets.keys.secretAccessKey }}
      optional: true
{{- with .Values.objectStore.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.objectStore.endpoint }}
- name: AWS_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if .Values.objectStore.allowHttp }}
- name: AWS_ALLOW_HTTP
  value: "true"
{{- end }}
{{- end }}
