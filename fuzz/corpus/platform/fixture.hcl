# Platform file: where the shared infrastructure lives. Every block and attribute is optional.
platform {
  provisioned_by          = "admin@matih.ai"
  control_plane_namespace = "matih-system"
}

dns {
  parent_zone = "matih.ai"
}

# The PostgreSQL admin password is read from the environment, never from this file.
postgres {
  host = "pg.internal"
  port = 5432
}

images {
  registry = "matih.azurecr.io"
  tag      = "1.4.2"
}

certificates {
  cluster_issuer = "letsencrypt-prod-dns01"
}
services {
  delivery = "helm"
}
helm {
  binary           = "/usr/local/bin/helm"
  chart_repository = "https://charts.matih.ai/matih"
  timeout_ms       = 300000
}
