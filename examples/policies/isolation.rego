# Changes to a tenant's isolation pass, with a warning for the reviewer: network policies, roles and their
# bindings, quotas and limit ranges, the tenant's PostgreSQL role.
package main

import rego.v1

isolation := {
	"kubernetes_network_policy", "kubernetes_role", "kubernetes_role_binding", "kubernetes_cluster_role",
	"kubernetes_cluster_role_binding", "kubernetes_resource_quota", "kubernetes_limit_range", "postgresql_role",
}

isolation_verb := {"update": "changed", "replace": "replaced", "delete": "deleted"}

warn_isolation contains msg if {
	some t in input.tenants
	some rc in t.resource_changes
	rc.type in isolation
	isolation_verb[rc.action]
	msg := sprintf("%s: %s will be %s (network isolation, access control or quotas)", [t.slug, rc.address, isolation_verb[rc.action]])
}
