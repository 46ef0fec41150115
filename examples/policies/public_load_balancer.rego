# No public LoadBalancer without the annotations its tenant's tier requires.
#
# A Service of type LoadBalancer is public unless annotated
# service.beta.kubernetes.io/azure-load-balancer-internal: "true". A public one must carry every annotation
# data.load_balancer.required_annotations[TIER] names (load_balancer.json), with that value: the platform guide's
# health-probe path of phase 6 in every tier, so that Azure's probe checks the controller and not "/". A Service
# comes as a kubernetes_service, or as the controller's Service in a helm_release's values (delivery = "helm").
package main

import rego.v1

# [slug, tier, address, annotations] of every LoadBalancer Service the plan leaves in place.
load_balancers contains [t.slug, t.tier, rc.address, annotations] if {
	some t in input.tenants
	some rc in t.resource_changes
	rc.type == "kubernetes_service"
	rc.after.spec.type == "LoadBalancer"
	annotations := object.get(rc.after.metadata, "annotations", {})
}

load_balancers contains [t.slug, t.tier, rc.address, annotations] if {
	some t in input.tenants
	some rc in t.resource_changes
	rc.type == "helm_release"
	service := rc.after.values.controller.service
	service.type == "LoadBalancer"
	annotations := object.get(service, "annotations", {})
}

public(annotations) if {
	object.get(annotations, "service.beta.kubernetes.io/azure-load-balancer-internal", "false") != "true"
}

deny_public_load_balancer contains msg if {
	some [slug, tier, address, annotations] in load_balancers
	public(annotations)
	some key, want in data.load_balancer.required_annotations[tier]
	have := object.get(annotations, key, "(none)")
	have != want
	msg := sprintf(
		"%s: %s is a public LoadBalancer whose annotation %s is %s; tier %s requires %s",
		[slug, address, key, have, tier, want],
	)
}

deny_public_load_balancer contains msg if {
	some [slug, tier, address, annotations] in load_balancers
	public(annotations)
	not data.load_balancer.required_annotations[tier]
	msg := sprintf(
		"%s: %s is a public LoadBalancer and tier %s has no entry in load_balancer.json",
		[slug, address, tier],
	)
}
