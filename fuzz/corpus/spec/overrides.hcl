tenant "beta-co" {
  id           = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
  tier         = "enterprise"
  region       = "westeurope"
  admin_email  = "ops@beta.example"
  protect_database = true
  services {
    ai_service { replicas = 3 enabled = true image_tag = "1.2.3" depends_on = ["query_engine"] }
    query_engine { enabled = false }
  }
  monitoring {
    notify_email             = ["a@beta.example", "b@beta.example"]
    notify_slack_webhook_env = "BETA_SLACK"
  }
}
