kubernetes {
  context                      = "matih-test"
  load_balancer_ip_interval_ms = 500
  poll_interval_ms             = 200
}
postgres {
  host = "127.0.0.1"
  port = 5432
  admin_url_env = "MATIH_POSTGRES_ADMIN_URL"
}
dns {
  parent_zone = "matih.test"
  provider    = "powerdns"
  api_url     = "http://127.0.0.1:8081"
  api_key_env = "PDNS_API_KEY"
  nameservers = ["ns1.matih.test.", "ns2.matih.test."]
}
events {
  kafka_brokers = ["127.0.0.1:9092"]
  topic         = "tenant-events"
}
state {
  backend = "postgres"
}
