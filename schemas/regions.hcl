# Azure regions a tenant may be placed in (the `region` of a tenant spec and the
# `matih.ai/region` label of every tenant object).

regions = [
  "eastus",
  "eastus2",
  "westus2",
  "westeurope",
  "northeurope",
  "southeastasia",
]
