# The MATIH services of a tenant's data plane.
#
# Each `service` block is one Deployment plus one ClusterIP Service in the tenant namespace. The block
# label is the catalog name (snake_case, as used in tenant specs: `services { ai_service { … } }`);
# the Kubernetes name is the same with '-' for '_' (`ai-service`).
#
# `phase` is the guide's phase: 3 (DEPLOY_CORE_SERVICES) or 5 (DEPLOY_DATA_SERVICES).
# `chart` is the guide's Helm chart, kept for people. With the platform's `services { delivery = "helm" }`
# each service is a Helm release of `helm_chart` at `chart_version`, from the platform's chart
# repository (the project's own chart, charts/matih-service, by default); otherwise matih applies the
# rendered objects itself.
# `depends_on` follows the guide's deployment order; a service waits until the Deployments it depends
# on are ready. Every service also waits for the database (phase 2), which is not listed here.
# `internet_egress` marks connector services: the only pods allowed to reach the internet.
#
# `service_defaults` are the guide's "Helm Release Configuration" tenant values; a service block may
# override any of them. In `image`, `{registry}` and `{tag}` are the platform's image registry and tag
# (a tenant's `image_tag` override wins) and `{name}` is the Kubernetes name of the service.

service_defaults {
  replicas        = 1
  image           = "{registry}/{name}:{tag}"
  requests_cpu    = "250m"
  requests_memory = "512Mi"
  limits_cpu      = "1000m"
  limits_memory   = "1Gi"
  health_path     = "/health"
  helm_chart      = "matih-service"
  chart_version   = "0.1.0"
}

# Phase 3: DEPLOY_CORE_SERVICES.

service "query_engine" {
  phase       = 3
  chart       = "matih/query-engine"
  description = "SQL query execution and optimization"
  port        = 8080
}

service "ai_service" {
  phase       = 3
  chart       = "matih/ai-service"
  description = "Conversational AI and text-to-SQL"
  port        = 8000
}

service "catalog_service" {
  phase       = 3
  chart       = "matih/catalog-service"
  description = "Data catalog and metadata management"
  port        = 8080
}

# Phase 5: DEPLOY_DATA_SERVICES, in the guide's deployment order.

service "pipeline_service" {
  phase           = 5
  chart           = "matih/pipeline-service"
  description     = "Data pipeline orchestration"
  port            = 8080
  internet_egress = true
}

service "semantic_layer" {
  phase       = 5
  chart       = "matih/semantic-layer"
  description = "Business metric definitions"
  port        = 8080
  depends_on  = ["catalog_service"]
}

service "bi_service" {
  phase       = 5
  chart       = "matih/bi-service"
  description = "Business intelligence and dashboards"
  port        = 3000
  depends_on  = ["semantic_layer", "query_engine"]
}

service "data_quality_service" {
  phase       = 5
  chart       = "matih/data-quality-service"
  description = "Data quality monitoring"
  port        = 8080
  depends_on  = ["catalog_service"]
}

service "ml_service" {
  phase       = 5
  chart       = "matih/ml-service"
  description = "Machine learning operations"
  port        = 8000
  depends_on  = ["query_engine"]
}

service "render_service" {
  phase       = 5
  chart       = "matih/render-service"
  description = "Chart and visualization rendering"
  port        = 3000
  depends_on  = ["bi_service"]
}

# Front doors of the tenant Ingress.
#
# The guide's Ingress routes `{slug}.{parent}/api` to `api-gateway:8080` and `bi.{slug}.{parent}/` to
# `bi-workbench:3000`, but no phase of the guide deploys anything with those names. Rather than let the
# Ingress point at nothing, each `frontend` is a ClusterIP Service with the guide's name and port that
# selects the pods of an existing service: the API is served by the query engine, the BI workbench by
# the BI service. They are created in phase 5, once their target is deployed. Disabling a target
# service is an error while a frontend selects it.

frontend "api_gateway" {
  phase       = 5
  port        = 8080
  target      = "query_engine"
  description = "Entry point of the tenant's public API (Ingress path /api)"
}

frontend "bi_workbench" {
  phase       = 5
  port        = 3000
  target      = "bi_service"
  description = "The BI workbench UI (Ingress host bi.{slug}.{parent})"
}
