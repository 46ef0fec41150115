tenant "Bad_Slug" {
  id = "not-a-uuid"
  tier = "gold"
  region = "mars"
  admin_email = "nobody"
  services { ai_servce { replicas = 99 } }
  monitoring { notify_slack_webhook_env = "https://hooks.slack.example/x" }
}
tenant "acme" {
  id = "550e8400-e29b-41d4-a716-446655440000"
  tier = "free"
  services { a { depends_on = ["b"] } b { depends_on = ["a"] } }
