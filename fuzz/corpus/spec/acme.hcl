# Acme Corporation: the tenant the provisioning guide walks through (namespace matih-acme).
tenant "acme" {
  id           = "550e8400-e29b-41d4-a716-446655440000"
  tier         = "professional"
  region       = "eastus"
  admin_email  = "admin@acme.example"
  display_name = "Acme Corporation"

  services {
    ai_service {
      replicas = 2
    }
  }

  monitoring {
    notify_email             = ["ops@acme.example"]
    notify_slack_webhook_env = "ACME_SLACK_WEBHOOK" # the URL itself is read from this variable
  }
}
