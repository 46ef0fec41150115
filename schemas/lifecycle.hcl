# Lifecycle rules of the catalog's resources, for every tenant.
#
# ignore_changes "KIND" (or "KIND.NAME") { paths = [...] }
#   Attribute paths, spelled as plans print them (spec.replicas, metadata.labels["matih.ai/tier"],
#   spec.template.spec.containers[0].image), whose differences `matih plan` and `matih drift` leave alone
#   and list as ignored: a field another controller or team owns. A tenant adds its own with
#   `lifecycle { ignore_changes = ["KIND.NAME:PATH"] }` in its spec.
#
#   ignore_changes "kubernetes_deployment" {
#     paths = ["spec.template.metadata.annotations[\"kubectl.kubernetes.io/restartedAt\"]"]
#   }
#
# moved { from = "KIND.OLD"  to = "KIND.NEW" }
#   A resource of the catalog renamed: a tenant whose record has the old address has it moved to the new one
#   (the plan says "# KIND.OLD has moved to KIND.NEW"), never destroyed and created again. Keep a move as long
#   as any tenant may still record the old address. The kind never changes; a move may not chain into another
#   (write KIND.A -> KIND.C and KIND.B -> KIND.C, not KIND.A -> KIND.B -> KIND.C), and its target must be a
#   resource the catalog still makes.
#
#   moved {
#     from = "kubernetes_config_map.tempo_overrides"
#     to   = "kubernetes_config_map.tracing_overrides"
#   }
