# Platform components every tenant gets, besides the MATIH services: database settings, the tenant's
# own NGINX ingress controller, monitoring and observability. Versions are pinned here so that a
# catalog change, not an upstream release, is what changes a tenant.

database {
  # Free and professional tenants get a schema in this shared database; enterprise tenants get a
  # database of their own named like their role.
  shared_database = "matih_tenants"
  # Flyway's history table, created in the tenant schema (or database).
  history_table = "flyway_schema_history"
}

# The guide's ingress-nginx Helm values (phase 6), rendered as objects.
ingress_controller {
  image           = "registry.k8s.io/ingress-nginx/controller:v1.11.3"
  replicas        = 2
  requests_cpu    = "100m"
  requests_memory = "128Mi"
  limits_cpu      = "500m"
  limits_memory   = "256Mi"
  health_path     = "/healthz"
  # With services { delivery = "helm" }: the project's chart charts/matih-ingress-nginx.
  helm_chart      = "matih-ingress-nginx"
  chart_version   = "0.2.0"
}

monitoring {
  prometheus_version = "v2.54.1"
  retention          = "15d"
  scrape_interval    = "30s"
  # The platform's Alertmanager, which the tenant's AlertmanagerConfig extends.
  alertmanager_service = "alertmanager-operated"
  alertmanager_port    = "web"
}

observability {
  # The namespace of the shared Loki, Tempo and Alertmanager.
  namespace            = "matih-observability"
  loki_url             = "http://loki-gateway.matih-observability.svc.cluster.local"
  tempo_url            = "http://tempo-query-frontend.matih-observability.svc.cluster.local:3200"
  tempo_otlp_endpoint  = "tempo-distributor.matih-observability.svc.cluster.local:4317"
  otel_collector_image = "otel/opentelemetry-collector-contrib:0.110.0"
  check_image          = "curlimages/curl:8.10.1"
}
