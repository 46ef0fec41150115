# DNS of a tenant (phase 7, CREATE_DNS_ZONE): a child zone `{slug}.{parent}` delegated from the parent
# zone, and the guide's A records, all pointing at the LoadBalancer IP of the tenant's ingress controller.
#
# `name` is the record's name inside the child zone (`@` is the apex); the block label is the name of the
# record in matih addresses (`dns_a_record.apex`).

dns {
  ns_delegation_ttl = 3600

  record "apex" {
    name = "@"
    type = "A"
    ttl  = 300
  }

  record "wildcard" {
    name = "*"
    type = "A"
    ttl  = 300
  }

  record "api" {
    name = "api"
    type = "A"
    ttl  = 300
  }

  record "bi" {
    name = "bi"
    type = "A"
    ttl  = 300
  }
}
