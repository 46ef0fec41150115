# NetworkPolicies of the tenant namespace (phase 4, CONFIGURE_NETWORKING).
#
# The first three are the guide's policies, verbatim but for one thing: the guide selects the ingress controller's
# namespace by its `matih.ai/tenant-slug` label, which anyone who may label namespaces can put on another one;
# here it is selected by `kubernetes.io/metadata.name`, which the API server sets to the namespace's name and no
# one can change. The rest implement the egress column of the guide's
# "Isolation Guarantees" table: egress is denied by default, then allowed within the namespace, to DNS,
# to the control plane namespace, to the database port, and to the internet for connector services only.
# Three more are needed for the tenant's own ingress controller, Prometheus and telemetry to work at
# all under default-deny: traffic from the LoadBalancer to the controller pods, access to the
# Kubernetes API for the pods that watch it, and egress to the shared observability namespace (Loki,
# Tempo, Alertmanager).
#
# `spec` is the NetworkPolicy spec. In strings, `{namespace}`, `{slug}`, `{control_plane_namespace}`
# and `{observability_namespace}` are replaced per tenant. A string that is only `{postgres_port}`
# becomes the platform's PostgreSQL port (a number), and one that is only `{connector_services}` the
# list of Kubernetes names of the enabled services with `internet_egress`. `only_if =
# "connector_services"` leaves a policy out when that list is empty.

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
    podSelector = {}
    ingress = [
      {
        from = [
          {
            namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "{namespace}" } }
            podSelector       = { matchLabels = { "app.kubernetes.io/name" = "ingress-nginx" } }
          },
        ]
      },
    ]
  }
}

network_policy "allow-loadbalancer-to-ingress-controller" {
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
      },
    ]
  }
}

network_policy "allow-observability-egress" {
  spec = {
    podSelector = {}
    policyTypes = ["Egress"]
    egress = [
      {
        to = [
          { namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "{observability_namespace}" } } },
        ]
      },
    ]
  }
}

network_policy "allow-database-egress" {
  spec = {
    podSelector = {}
    policyTypes = ["Egress"]
    egress = [
      { ports = [{ protocol = "TCP", port = "{postgres_port}" }] },
    ]
  }
}

network_policy "allow-kubernetes-api-egress" {
  spec = {
    podSelector = {
      matchExpressions = [
        {
          key      = "app.kubernetes.io/name"
          operator = "In"
          values   = ["ingress-nginx", "prometheus"]
        },
      ]
    }
    policyTypes = ["Egress"]
    egress = [
      {
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
