# Initech: an enterprise tenant (dedicated database) with larger query and BI deployments.
tenant "initech" {
  id           = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
  tier         = "enterprise"
  region       = "westus2"
  admin_email  = "platform@initech.example"
  display_name = "Initech"

  services {
    query_engine {
      replicas = 3
    }
    bi_service {
      replicas = 2
    }
  }

  monitoring {
    notify_email             = ["oncall@initech.example", "platform@initech.example"]
    notify_slack_webhook_env = "INITECH_SLACK_WEBHOOK"
  }
}
