# NetworkPolicies of the tenant namespace (phase 4, CONFIGURE_NETWORKING) and of its edge namespace
# (`namespace = "edge"`: created with the edge namespace in phase 6).
#
# The first three are the guide's policies but for two things. The tenant's ingress controller runs in a
# namespace of its own, `matih-{slug}-edge` (with the Ingress and its TLS Secret), so that it cannot read
# the tenant's Secrets; `allow-ingress-controller` admits that namespace's controller pods, only to the
# pods the Ingress routes to and on their ports. And the namespace is selected by
# `kubernetes.io/metadata.name`, which the API server sets to the namespace's name and no one can change,
# not by the `matih.ai/tenant-slug` label the guide uses, which anyone who may label namespaces can put on
# another one. The rest implement the egress column of the guide's "Isolation Guarantees" table: egress
# is denied by default, then allowed within the namespace, to DNS, to the control plane namespace's
# service ports, to the database's address and port, and to the internet for connector services only.
# A few more are needed for the tenant's Prometheus and telemetry to work at all under default-deny: the
# API server's endpoints for Prometheus, and the shared observability backends' ingest ports for the
# tenant's collector (and Alertmanager for its Prometheus). Nothing is open to any address on a port
# alone. The edge namespace denies everything but traffic from the LoadBalancer to the controller, DNS,
# the API server's endpoints, and the controller's connections to the Ingress's backends.
#
# `spec` is the NetworkPolicy spec. In strings, `{namespace}`, `{edge_namespace}`, `{slug}`,
# `{control_plane_namespace}` and `{observability_namespace}` are replaced per tenant. A string that is
# only `{postgres_port}` becomes the platform's PostgreSQL port (a number), one that is only
# `{connector_services}` the list of Kubernetes names of the enabled services with `internet_egress`, one
# that is only `{ingress_backends}` the Kubernetes names of the services the tenant Ingress reaches (the
# frontends' targets) and `{ingress_backend_ports}` their container ports (NetworkPolicy ports);
# `{database_peers}` and `{api_server_peers}` the NetworkPolicy peers of the database and the API server
# (see below). `only_if = "connector_services"` leaves a policy out when that list is empty.

network_policy "default-deny-ingress" {
  spec = {
    podSelector = {}
    policyTypes = ["Ingress"]
  }
}

network_policy "allow-same-namespace" {
  spec = {
    podSelector = {}
    ingress = [
      { from = [{ podSelector = {} }] },
    ]
  }
}

network_policy "allow-ingress-controller" {
  spec = {
    podSelector = {
      matchExpressions = [
        { key = "app.kubernetes.io/name", operator = "In", values = "{ingress_backends}" },
      ]
    }
    policyTypes = ["Ingress"]
    ingress = [
      {
        from = [
          {
            namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "{edge_namespace}" } }
            podSelector       = { matchLabels = { "app.kubernetes.io/name" = "ingress-nginx" } }
          },
        ]
        ports = "{ingress_backend_ports}"
      },
    ]
  }
}

network_policy "default-deny-egress" {
  spec = {
    podSelector = {}
    policyTypes = ["Egress"]
  }
}

network_policy "allow-same-namespace-egress" {
  spec = {
    podSelector = {}
    policyTypes = ["Egress"]
    egress = [
      { to = [{ podSelector = {} }] },
    ]
  }
}

network_policy "allow-dns-egress" {
  spec = {
    podSelector = {}
    policyTypes = ["Egress"]
    egress = [
      {
        to = [
          {
            namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "kube-system" } }
            podSelector       = { matchLabels = { "k8s-app" = "kube-dns" } }
          },
        ]
        ports = [
          { protocol = "UDP", port = 53 },
          { protocol = "TCP", port = 53 },
        ]
      },
    ]
  }
}

network_policy "allow-control-plane-egress" {
  spec = {
    podSelector = {}
    policyTypes = ["Egress"]
    egress = [
      {
        to = [
          { namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "{control_plane_namespace}" } } },
        ]
        # The control plane's service ports (tenant-service's HTTPS and HTTP APIs): edit to the platform's.
        ports = [
          { protocol = "TCP", port = 443 },
          { protocol = "TCP", port = 8080 },
        ]
      },
    ]
  }
}

# Only the tenant's own OpenTelemetry collector reaches the shared backends, on their ingest ports
# (Tempo's OTLP gRPC), with the tenant's credentials (the Secret observability-credentials); the
# tenant's Prometheus reaches the shared Alertmanager; the pipeline check reaches Loki's gateway
# (its /ready). No other tenant pod reaches the observability namespace.
network_policy "allow-observability-egress" {
  spec = {
    podSelector = { matchLabels = { "app.kubernetes.io/name" = "tenant-collector" } }
    policyTypes = ["Egress"]
    egress = [
      {
        to = [
          { namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "{observability_namespace}" } } },
        ]
        ports = [{ protocol = "TCP", port = 4317 }]
      },
    ]
  }
}

network_policy "allow-alertmanager-egress" {
  spec = {
    podSelector = { matchLabels = { "app.kubernetes.io/name" = "prometheus" } }
    policyTypes = ["Egress"]
    egress = [
      {
        to = [
          { namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "{observability_namespace}" } } },
        ]
        ports = [{ protocol = "TCP", port = 9093 }]
      },
    ]
  }
}

network_policy "allow-observability-check-egress" {
  spec = {
    podSelector = { matchLabels = { "app.kubernetes.io/name" = "observability-pipeline-check" } }
    policyTypes = ["Egress"]
    egress = [
      {
        to = [
          { namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "{observability_namespace}" } } },
        ]
        ports = [{ protocol = "TCP", port = 80 }]
      },
    ]
  }
}

# The database's address only: `{database_peers}` is the platform's `network { database_cidrs }`, or
# the PostgreSQL host itself when it is an IP address, or its namespace when it is a cluster Service
# name (NAME.NAMESPACE.svc…).
network_policy "allow-database-egress" {
  spec = {
    podSelector = {}
    policyTypes = ["Egress"]
    egress = [
      {
        to    = "{database_peers}"
        ports = [{ protocol = "TCP", port = "{postgres_port}" }]
      },
    ]
  }
}

# The API server's endpoints only (`{api_server_peers}`: the platform's `network { api_server_cidrs }`,
# or the `kubernetes { api_url }` host when it is an IP address), for the pods that watch it.
network_policy "allow-kubernetes-api-egress" {
  spec = {
    podSelector = { matchLabels = { "app.kubernetes.io/name" = "prometheus" } }
    policyTypes = ["Egress"]
    egress = [
      {
        to = "{api_server_peers}"
        ports = [
          { protocol = "TCP", port = 443 },
          { protocol = "TCP", port = 6443 },
        ]
      },
    ]
  }
}

network_policy "allow-connector-internet-egress" {
  only_if = "connector_services"
  spec = {
    podSelector = {
      matchExpressions = [
        { key = "app.kubernetes.io/name", operator = "In", values = "{connector_services}" },
      ]
    }
    policyTypes = ["Egress"]
    egress = [
      {
        # The internet only: not the cluster's or the company's private ranges (RFC 1918, CGNAT 100.64.0.0/10,
        # IPv6 unique-local), not loopback, not link-local (the cloud's metadata endpoint is 169.254.169.254).
        to = [
          {
            ipBlock = {
              cidr   = "0.0.0.0/0"
              except = ["10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"]
            }
          },
          {
            ipBlock = {
              cidr   = "::/0"
              except = ["::1/128", "fc00::/7", "fe80::/10"]
            }
          },
        ]
      },
    ]
  }
}

# The edge namespace: the ingress controller, the tenant Ingress, its TLS Secret and the ExternalName
# Services that name the tenant's backends. Nothing enters or leaves but what the controller needs.

network_policy "edge-default-deny" {
  namespace = "edge"
  spec = {
    podSelector = {}
    policyTypes = ["Ingress", "Egress"]
  }
}

# Clients, through the LoadBalancer, on the controller's HTTP and HTTPS ports.
network_policy "edge-allow-loadbalancer" {
  namespace = "edge"
  spec = {
    podSelector = { matchLabels = { "app.kubernetes.io/name" = "ingress-nginx" } }
    policyTypes = ["Ingress"]
    ingress = [
      {
        from = [{ ipBlock = { cidr = "0.0.0.0/0" } }]
        ports = [
          { protocol = "TCP", port = 80 },
          { protocol = "TCP", port = 443 },
        ]
      },
    ]
  }
}

# The controller resolves the ExternalName Services' names.
network_policy "edge-allow-dns-egress" {
  namespace = "edge"
  spec = {
    podSelector = { matchLabels = { "app.kubernetes.io/name" = "ingress-nginx" } }
    policyTypes = ["Egress"]
    egress = [
      {
        to = [
          {
            namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "kube-system" } }
            podSelector       = { matchLabels = { "k8s-app" = "kube-dns" } }
          },
        ]
        ports = [
          { protocol = "UDP", port = 53 },
          { protocol = "TCP", port = 53 },
        ]
      },
    ]
  }
}

# The controller watches its namespace's Ingresses, Services, endpoints and Secrets.
network_policy "edge-allow-kubernetes-api-egress" {
  namespace = "edge"
  spec = {
    podSelector = { matchLabels = { "app.kubernetes.io/name" = "ingress-nginx" } }
    policyTypes = ["Egress"]
    egress = [
      {
        to = "{api_server_peers}"
        ports = [
          { protocol = "TCP", port = 443 },
          { protocol = "TCP", port = 6443 },
        ]
      },
    ]
  }
}

# The controller proxies to the Ingress's backends in the tenant namespace (the pods behind the
# ExternalName Services), on their ports; `allow-ingress-controller` admits it on the other side.
network_policy "edge-allow-backends-egress" {
  namespace = "edge"
  spec = {
    podSelector = { matchLabels = { "app.kubernetes.io/name" = "ingress-nginx" } }
    policyTypes = ["Egress"]
    egress = [
      {
        to = [
          {
            namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "{namespace}" } }
            podSelector = {
              matchExpressions = [
                { key = "app.kubernetes.io/name", operator = "In", values = "{ingress_backends}" },
              ]
            }
          },
        ]
        ports = "{ingress_backend_ports}"
      },
    ]
  }
}
