# Globex: a free-tier tenant in Europe with the catalog defaults.
tenant "globex" {
  id           = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
  tier         = "free"
  region       = "westeurope"
  admin_email  = "it@globex.example"
  display_name = "Globex Corporation"

  monitoring {
    notify_email = ["it@globex.example"]
  }
}
