# A policy written for Terraform plans, in the style of conftest's Terraform examples (Rego v0, input being
# `terraform show -json`'s document), run unchanged on matih's plans:
#
#   matih plan tenants/ --policy examples/policies-terraform --json-shape terraform --rego-version v0
#
# It knows nothing of matih's own JSON: only resource_changes[], change.actions and the resource types.
package main

protected_types = {"postgresql_database", "postgresql_schema", "kubernetes_persistent_volume_claim"}

max_deletes = 20

deny[msg] {
	rc := input.resource_changes[_]
	rc.mode == "managed"
	rc.change.actions[_] == "delete"
	protected_types[rc.type]
	msg := sprintf("%v: deleting a %v is not allowed (actions: %v)", [rc.address, rc.type, rc.change.actions])
}

deny[msg] {
	deletes := [rc.address | rc := input.resource_changes[_]; rc.change.actions[_] == "delete"]
	count(deletes) > max_deletes
	msg := sprintf("%d resources would be deleted, more than %d: split the change", [count(deletes), max_deletes])
}

warn[msg] {
	rc := input.resource_changes[_]
	rc.change.actions == ["delete", "create"]
	msg := sprintf("%v will be replaced (%v)", [rc.address, rc.action_reason])
}
