{{/* Names, labels and the settings every component shares. */}}

{{- define "ingest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: "ingest" for `helm install ingest`, so the ServiceAccounts are
ingest-api, ingest-operator and ingest-worker, the identities the local stack also uses. */}}
{{- define "ingest.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "ingest.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "ingest.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ingest.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "ingest.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "ingest.selectorLabels" . }}
{{- end -}}

{{- define "ingest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ingest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ingest.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "ingest.serviceAccount" -}}
{{- printf "%s-%s" (include "ingest.fullname" .root) .component -}}
{{- end -}}

{{/* The Secret holding INGEST_S3_ACCESS_KEY and INGEST_S3_SECRET_KEY. */}}
{{- define "ingest.s3Secret" -}}
{{- default (printf "%s-s3" (include "ingest.fullname" .)) .Values.objectStore.existingSecret -}}
{{- end -}}

{{- define "ingest.s3Endpoint" -}}
{{- if .Values.objectStore.endpoint -}}
{{- .Values.objectStore.endpoint -}}
{{- else if .Values.minio.enabled -}}
{{- printf "%s-minio.%s.svc:9000" (include "ingest.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- fail "objectStore.endpoint is required when minio.enabled is false" -}}
{{- end -}}
{{- end -}}

{{- define "ingest.moveClaim" -}}
{{- default (printf "%s-move" (include "ingest.fullname" .)) .Values.move.existingClaim -}}
{{- end -}}

{{- define "ingest.authSecret" -}}
{{- default (printf "%s-auth" (include "ingest.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* Pod and container security settings shared by the API, the operator and MinIO. */}}
{{- define "ingest.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsUser }}
fsGroup: {{ .Values.securityContext.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "ingest.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Settings and credentials, as environment variables, for the API and the operator (which
hands them on to worker Pods). */}}
{{- define "ingest.envFrom" -}}
- configMapRef:
    name: {{ include "ingest.fullname" . }}-config
- secretRef:
    name: {{ include "ingest.s3Secret" . }}
{{- end -}}
