//go:build tools

// Package tools pins Helm 3 (helm.sh/helm/v3/cmd/helm), which scripts/lib/helm.sh builds.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
