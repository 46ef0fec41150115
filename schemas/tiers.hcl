# Tiers of service: what a tenant of each tier gets.
#
# `quota` is the `spec.hard` of the tenant's ResourceQuota, exactly as the guide's "Resource Quotas
# (Applied for Shared Tiers)" table. A tier without `quota` is unlimited: no ResourceQuota object is
# created at all (enterprise).
#
# `database_isolation` follows the guide's "Database Isolation Strategy": `schema` (a schema per tenant
# in the shared database) or `database` (a database per tenant).
#
# `connection_limit` is the PostgreSQL `CONNECTION LIMIT` of the tenant's role. Free tenants share the
# instance's pool with a small limit; professional tenants get a dedicated pool of `pool_size`
# connections (the guide's "dedicated connection pool"), which is also their role's limit.
#
# `trace_retention` is the Tempo block retention of the tenant's traces.
#
# `statement_timeout` and `temp_file_limit` are set on the tenant's role (`ALTER ROLE … SET`), so one tenant's runaway
# query cannot hold the shared instance's workers or fill its disk with temporary files. `temp_file_limit` can only
# be changed by a superuser, so the tenant cannot lift it; `statement_timeout` is the default of its sessions.
#
# `service_resources` replaces every service's container resources in that tier. The guide's service
# values (250m/512Mi requested, 1000m/1Gi limit) cannot fit the guide's free quota: seven services
# need limits.cpu 7 against a quota of 4, and the API server refuses the pods past it. The free tier
# runs its services smaller; a tenant whose workloads exceed its quota is a plan error.

tier "free" {
  database_isolation = "schema"
  connection_limit   = 10
  pool               = "shared"
  trace_retention    = "72h"
  statement_timeout  = "30s"
  temp_file_limit    = "1GB"

  service_resources = {
    requests_cpu    = "100m"
    requests_memory = "256Mi"
    limits_cpu      = "250m"
    limits_memory   = "512Mi"
  }

  quota = {
    "requests.cpu"    = "2"
    "limits.cpu"      = "4"
    "requests.memory" = "4Gi"
    "limits.memory"   = "8Gi"
    "pods"            = "20"
  }
}

tier "professional" {
  database_isolation = "schema"
  connection_limit   = 40
  pool               = "dedicated"
  pool_size          = 40
  trace_retention    = "336h"
  statement_timeout  = "300s"
  temp_file_limit    = "10GB"

  quota = {
    "requests.cpu"    = "8"
    "limits.cpu"      = "16"
    "requests.memory" = "16Gi"
    "limits.memory"   = "32Gi"
    "pods"            = "50"
  }
}

tier "enterprise" {
  database_isolation = "database"
  connection_limit   = 200
  pool               = "dedicated"
  pool_size          = 200
  trace_retention    = "720h"
  statement_timeout  = "1800s"
  temp_file_limit    = "100GB"
}
