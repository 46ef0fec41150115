platform { provisioned_by = 3 }
postgres { admin_url = "postgres://u:secret@h/db" port = "x" }
dns { provider = "azure" api_key = "k" }
kubernetes { api_url = "ftp://x" poll_interval_ms = -1 }
unknown {}
