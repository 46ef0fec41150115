# Helm 3, built from the upstream Go module pinned in controlplane/helm/go.mod (helm.sh/helm/v3;
# nothing of its code is in this repository), for the tests and scripts/dev-env.
#
# Source this file; it defines:
#   helm_build   builds `helm` once per pin into $MATIH_CACHE/helm/bin-KEY/helm (KEY: a hash of the
#                wrapper module and the Go version), then puts that directory first on PATH and
#                exports MATIH_HELM (the binary's path); also builds the OCI registry of the tests
#                (controlplane/registry: go-containerregistry's pkg/registry behind a small main,
#                pinned in its go.mod) into $MATIH_CACHE/helm/registry-KEY and exports
#                MATIH_OCI_REGISTRY (`helm push` and `oci://` chart references are tested against it)

HELM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HELM_CACHE="${MATIH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/matih}/helm"

helm_build() {
  local dir="$HELM_ROOT/controlplane/helm" key version start
  command -v go >/dev/null || { echo "error: helm is built with Go (go not found)" >&2; return 1; }
  key=$( (cat "$dir/go.mod" "$dir/go.sum" && GOTOOLCHAIN=local go version) | sha256sum | cut -c1-16)
  MATIH_HELM="$HELM_CACHE/bin-$key/helm"
  if [ ! -x "$MATIH_HELM" ]; then
    version=$(sed -n 's/^require helm.sh\/helm\/v3 //p' "$dir/go.mod")
    echo "==> building helm $version from the Go module helm.sh/helm/v3" >&2
    start=$(date +%s)
    mkdir -p "$HELM_CACHE/bin-$key"
    # Helm stamps its version through these variables (its Makefile does the same).
    (cd "$dir" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
      -o "$MATIH_HELM.tmp" helm.sh/helm/v3/cmd/helm) || return 1
    mv "$MATIH_HELM.tmp" "$MATIH_HELM"
    echo "    $(($(date +%s) - start)) s" >&2
  fi
  export MATIH_HELM
  registry_build || return 1
  case ":$PATH:" in
    *":$HELM_CACHE/bin-$key:"*) ;;
    *) PATH="$HELM_CACHE/bin-$key:$PATH" ;;
  esac
  export PATH
}

registry_build() {
  local dir="$HELM_ROOT/controlplane/registry" key start
  key=$( (cat "$dir/go.mod" "$dir/go.sum" "$dir/main.go" && GOTOOLCHAIN=local go version) | sha256sum | cut -c1-16)
  MATIH_OCI_REGISTRY="$HELM_CACHE/registry-$key"
  if [ ! -x "$MATIH_OCI_REGISTRY" ]; then
    echo "==> building the OCI registry of the tests (github.com/google/go-containerregistry/pkg/registry)" >&2
    start=$(date +%s)
    mkdir -p "$HELM_CACHE"
    (cd "$dir" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath -o "$MATIH_OCI_REGISTRY.tmp" .) || return 1
    mv "$MATIH_OCI_REGISTRY.tmp" "$MATIH_OCI_REGISTRY"
    echo "    $(($(date +%s) - start)) s" >&2
  fi
  export MATIH_OCI_REGISTRY
}
