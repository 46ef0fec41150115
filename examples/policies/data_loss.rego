# No data-loss change without an approval.
#
# Deleting or replacing what holds a tenant's data (its PostgreSQL database or schema; a PersistentVolumeClaim, should
# a tenant get one) fails the plan unless approvals.json approves it:
# data.approvals.data_loss[SLUG][ADDRESS] (or [SLUG]["*"]) holds the change ticket that approved it. Approvals are
# reviewed like any other change, in the same pull request as the spec change they allow.
package main

import rego.v1

data_bearing := {"postgresql_database", "postgresql_schema", "kubernetes_persistent_volume_claim"}

data_loss_verb := {"delete": "deleted", "replace": "replaced"}

# The ticket that approved deleting or replacing `address` of tenant `slug`, if one did.
approval(slug, address) := data.approvals.data_loss[slug][address]

approval(slug, address) := data.approvals.data_loss[slug]["*"] if not data.approvals.data_loss[slug][address]

deny_data_loss contains msg if {
	some t in input.tenants
	some rc in t.resource_changes
	rc.action in {"delete", "replace"}
	rc.type in data_bearing
	not approval(t.slug, rc.address)
	msg := sprintf(
		"%s: %s would be %s, dropping the tenant's data; approve it in approvals.json (data_loss.%s[\"%s\"])",
		[t.slug, rc.address, data_loss_verb[rc.action], t.slug, rc.address],
	)
}

warn_data_loss_approved contains msg if {
	some t in input.tenants
	some rc in t.resource_changes
	rc.action in {"delete", "replace"}
	rc.type in data_bearing
	ticket := approval(t.slug, rc.address)
	msg := sprintf("%s: %s will be %s (approved: %s)", [t.slug, rc.address, data_loss_verb[rc.action], ticket])
}
