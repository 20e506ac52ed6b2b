#!/usr/bin/env bash
# Builds the relay image with podman, from the repository's Dockerfile unchanged, on a stand-in for
# its pinned base (docs/operations.md, "The image in the tests"). The test in test/image/ runs the
# result in the chart's pod shape. Prints the image reference on stdout; progress goes to stderr.
#
# The stand-in replaces only the base's identity: Debian bookworm (debootstrap minbase, from the apt
# mirror this machine uses) instead of node:<version>-bookworm-slim, with the same Node (the version
# in the Dockerfile, from the npm registry, sha256 pinned: scripts/install-node.sh --dist) and its
# npm under /usr/local, a `node` user and group with UID/GID 1000, and this machine's CA bundle for
# npm (a registry connection may be intercepted by a proxy with its own CA). It is built once per
# cache key (Node version, architecture, mirror, CA bundle and both scripts) and kept in podman's
# storage as localhost/tokenplace-node-standin:<version>-<key>; the relay image reuses podman's layer
# cache. Concurrent runs wait for each other (flock).
#
# Needs root, podman, runc and debootstrap (.ci/run installs them). podman runs with runc (crun
# refuses hybrid cgroup hierarchies) and explicit ulimits below the hard limits.
#   bash scripts/build-image.sh                 # prints localhost/tokenplace-relay:test
#   TOKENPLACE_IMAGE=localhost/relay:x bash scripts/build-image.sh
#   bash scripts/build-image.sh --no-cache      # both rebuilt from scratch (to time a cold build)
set -euo pipefail
cd "$(dirname "$0")/.."

COLD=""
case "${1:-}" in
  "") ;;
  --no-cache) COLD=yes ;;
  *)
    echo "usage: bash scripts/build-image.sh [--no-cache]" >&2
    exit 2
    ;;
esac

IMAGE="${TOKENPLACE_IMAGE:-localhost/tokenplace-relay:test}"
PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096)
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
SUITE=bookworm

log() { echo "build-image: $*" >&2; }
fail() {
  log "$*"
  exit 1
}
elapsed() { echo "$((SECONDS - $1)) s"; }

[ "$(id -u)" = "0" ] || fail "needs root (debootstrap, and podman's storage under /var/lib/containers)"
for tool in podman runc debootstrap flock; do
  command -v "$tool" >/dev/null || fail "${tool} is not installed (apt-get install podman buildah runc debootstrap)"
done
[ -f "$CA_BUNDLE" ] || fail "${CA_BUNDLE} is missing (apt-get install ca-certificates)"

# One build at a time per checkout (.ci/run starts one in the background; the test runs another).
mkdir -p .tools
exec 9>.tools/build-image.lock
flock 9

# The Node of the image: the Dockerfile's base tag, which scripts/install-node.sh must also pin.
node_version="$(sed -n 's/^ARG NODE_IMAGE=node:\([0-9][0-9.]*\)-.*/\1/p' Dockerfile)"
[ -n "$node_version" ] || fail "no node:<version> in the Dockerfile's ARG NODE_IMAGE"
dist="$(bash scripts/install-node.sh --dist)"
[ "$("${dist}/bin/node" --version)" = "v${node_version}" ] ||
  fail "scripts/install-node.sh installs $("${dist}/bin/node" --version), the Dockerfile wants v${node_version}: bump them together"

# The machine's Debian mirror (deb822 or one-line sources); deb.debian.org when it has none.
mirror="$(
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -n -e 's/^URIs:[[:space:]]*\(\S*\/debian\/\?\)[[:space:]]*$/\1/p' \
      -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(\S*\/debian\/\?\)[[:space:]].*/\2/p' |
    head -n 1 || true
)"
mirror="${mirror:-http://deb.debian.org/debian}"
arch="$(dpkg --print-architecture)"

key="$(
  {
    echo "${node_version} ${arch} ${SUITE} ${mirror}"
    sha256sum scripts/build-image.sh scripts/install-node.sh "$CA_BUNDLE" | cut -d' ' -f1
  } | sha256sum | cut -c1-12
)"
standin="localhost/tokenplace-node-standin:${node_version}-${key}"

if [ -z "$COLD" ] && "${PODMAN[@]}" image exists "$standin"; then
  log "stand-in base ${standin} (cached)"
else
  started=$SECONDS
  log "stand-in base ${standin}: debootstrap --variant=minbase ${SUITE} from ${mirror}"
  rootfs="$(mktemp -d "${TMPDIR:-/var/tmp}/tokenplace-standin.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  trap 'exit 143' TERM INT # .ci/run stops an unfinished background build: clean up on the way out
  debootstrap --variant=minbase --arch="$arch" "$SUITE" "$rootfs" "$mirror" >&2 ||
    fail "debootstrap failed (see above)"
  # What node:<version>-bookworm-slim adds to Debian: Node and npm under /usr/local, user node.
  cp -a "${dist}/bin" "${dist}/lib" "${rootfs}/usr/local/"
  chown -R 0:0 "${rootfs}/usr/local"
  chroot "$rootfs" groupadd --gid 1000 node
  chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  # This machine's CA bundle, for npm only (node itself keeps its bundled roots, as in the base).
  install -D -m 0644 "$CA_BUNDLE" "${rootfs}/etc/ssl/certs/ca-certificates.crt"
  mkdir -p "${rootfs}/usr/local/etc"
  echo "cafile=/etc/ssl/certs/ca-certificates.crt" >"${rootfs}/usr/local/etc/npmrc"
  rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin \
    "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/log/*.log
  tar --numeric-owner --xattrs -C "$rootfs" \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . |
    "${PODMAN[@]}" import \
      --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      --change "ENV NODE_VERSION=${node_version}" \
      --change 'CMD ["node"]' \
      - "$standin" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT TERM INT
  log "stand-in base ${standin} built in $(elapsed "$started")"
fi

started=$SECONDS
previous="$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
created="$(git log -1 --format=%cI 2>/dev/null || echo unknown)"
log "image ${IMAGE}: podman build of the Dockerfile, FROM ${standin}"
# The labels relay-oci.yml also passes. They matter here too: buildah 1.28 keys its layer cache on
# the instructions, not on --build-arg values, so with nothing changed but the commit it would hand
# back the last image whole, its labels and ENV naming the previous commit. Given labels make it
# commit the final image afresh, with every ARG-derived value of this build (cached layers reused).
"${PODMAN[@]}" build "${ULIMITS[@]}" \
  --pull=never --format docker --network host ${COLD:+--no-cache} \
  --build-arg "NODE_IMAGE=${standin}" \
  --build-arg "VERSION=test-${revision:0:7}" \
  --build-arg "REVISION=${revision}" \
  --build-arg "CREATED=${created}" \
  --label "org.opencontainers.image.revision=${revision}" \
  --label "org.opencontainers.image.version=test-${revision:0:7}" \
  --file Dockerfile --tag "$IMAGE" . >&2 || fail "podman build failed (see above)"
log "image ${IMAGE} built in $(elapsed "$started")"
# The image this tag named before, unless it is the same or still in use (its layers may be).
if [ -n "$previous" ] && [ "$previous" != "$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  "${PODMAN[@]}" rmi "$previous" >/dev/null 2>&1 || true
fi
echo "$IMAGE"
