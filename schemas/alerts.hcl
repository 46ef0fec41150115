# The guide's six default alert rules (phase 9, DEPLOY_MONITORING), one PrometheusRule per tenant.
#
# `expr` is PromQL; `{namespace}` is replaced by the tenant namespace (`matih-{slug}`), so that every
# rule only ever sees the tenant's own series. Thresholds and durations are the guide's "Default Alert
# Rules" table. The guide gives no duration for disk usage; 5 minutes keeps a brief spike from paging.

alert "TenantHighCPU" {
  summary  = "High CPU"
  severity = "warning"
  for      = "5m"
  expr     = <<-EOT
    sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="{namespace}", container!=""}[5m]))
      / sum by (pod) (kube_pod_container_resource_limits{namespace="{namespace}", resource="cpu"}) > 0.80
  EOT
  description = "Pod {{ $labels.pod }} uses more than 80% of its CPU limit."
}

alert "TenantHighMemory" {
  summary  = "High Memory"
  severity = "warning"
  for      = "5m"
  expr     = <<-EOT
    sum by (pod) (container_memory_working_set_bytes{namespace="{namespace}", container!=""})
      / sum by (pod) (kube_pod_container_resource_limits{namespace="{namespace}", resource="memory"}) > 0.85
  EOT
  description = "Pod {{ $labels.pod }} uses more than 85% of its memory limit."
}

alert "TenantPodRestarts" {
  summary  = "Pod Restart"
  severity = "critical"
  expr     = <<-EOT
    increase(kube_pod_container_status_restarts_total{namespace="{namespace}"}[15m]) > 3
  EOT
  description = "Container {{ $labels.container }} of pod {{ $labels.pod }} restarted more than 3 times in 15 minutes."
}

alert "TenantHighErrorRate" {
  summary  = "Error Rate"
  severity = "critical"
  for      = "5m"
  expr     = <<-EOT
    sum by (service) (rate(http_server_requests_seconds_count{namespace="{namespace}", status=~"5.."}[5m]))
      / sum by (service) (rate(http_server_requests_seconds_count{namespace="{namespace}"}[5m])) > 0.05
  EOT
  description = "More than 5% of the requests to {{ $labels.service }} fail with a 5xx status."
}

alert "TenantHighLatency" {
  summary  = "Latency"
  severity = "warning"
  for      = "5m"
  expr     = <<-EOT
    histogram_quantile(0.95, sum by (service, le) (rate(http_server_requests_seconds_bucket{namespace="{namespace}"}[5m]))) > 2
  EOT
  description = "The 95th percentile latency of {{ $labels.service }} is above 2 seconds."
}

alert "TenantDiskUsage" {
  summary  = "Disk Usage"
  severity = "warning"
  for      = "5m"
  expr     = <<-EOT
    kubelet_volume_stats_used_bytes{namespace="{namespace}"}
      / kubelet_volume_stats_capacity_bytes{namespace="{namespace}"} > 0.85
  EOT
  description = "PersistentVolumeClaim {{ $labels.persistentvolumeclaim }} is more than 85% full."
}
