#!/usr/bin/env bash
# Smoke-tests one platform of the built relay image before anything is published (relay-oci.yml):
# read-only root, tmpfs /tmp, UID 1000, no capabilities; /livez, /healthz, /metrics with and without
# the token, the end-to-end check run from the image itself, PID 1 is node, then SIGTERM:
# /healthz answers 503 draining during the drain window and the container exits 0.
# Inputs (environment): REF (image reference), PLATFORM (linux/amd64, linux/arm64), PORT (host port).
set -euo pipefail
: "${REF:?image reference}" "${PLATFORM:?platform}" "${PORT:?host port}"

name="relay-smoke-${PLATFORM//\//-}"
node_token="ci-node-token-${PORT}"
metrics_token="ci-metrics-token-${PORT}"
base="http://127.0.0.1:${PORT}"

fail() {
  echo "::error::${PLATFORM}: $*"
  exit 1
}
status_of() {
  curl -s -o /dev/null -w '%{http_code}' "$@" || true
}

docker pull --quiet --platform "$PLATFORM" "$REF"
docker run -d --name "$name" --platform "$PLATFORM" \
  --read-only --tmpfs /tmp:rw,size=16m --user 1000:1000 \
  --cap-drop ALL --security-opt no-new-privileges \
  -p "127.0.0.1:${PORT}:5010" \
  -e TOKENPLACE_RELAY_SERVER_TOKEN="$node_token" \
  -e TOKENPLACE_METRICS_TOKEN="$metrics_token" \
  -e TOKENPLACE_RELAY_DRAIN_SECONDS=5 \
  "$REF" >/dev/null
trap 'docker logs "$name" 2>&1 | tail -n 40 || true; docker rm -f "$name" >/dev/null 2>&1 || true' EXIT

ready=""
for _ in $(seq 1 180); do
  if [ "$(status_of "$base/healthz")" = "200" ]; then
    ready=yes
    break
  fi
  sleep 1
done
[ -n "$ready" ] || fail "/healthz never answered 200"

curl -fsS "$base/livez" | grep -q '"status":"alive"' || fail "/livez is not alive"
curl -fsS "$base/healthz" | grep -q '"status":"ok"' || fail "/healthz is not ok"
[ "$(status_of "$base/metrics")" = "401" ] || fail "/metrics without the token is not 401"
curl -fsS -H "Authorization: Bearer ${metrics_token}" "$base/metrics" | grep -q '^tokenplace_build_info{' ||
  fail "/metrics with the token has no tokenplace_build_info"

[ "$(docker exec "$name" id -u)" = "1000" ] || fail "the relay does not run as UID 1000"
docker exec "$name" cat /proc/1/cmdline | tr '\0' ' ' | grep -q '^node /app/dist/main.js' ||
  fail "PID 1 is not node /app/dist/main.js"

docker run --rm --platform "$PLATFORM" --network host --read-only --user 1000:1000 \
  "$REF" /app/dist/smoke/smoke.js "$base" --token "$node_token" --timeout 60 ||
  fail "the end-to-end check failed"

docker kill --signal TERM "$name" >/dev/null
draining=""
for _ in $(seq 1 20); do
  if [ "$(status_of "$base/healthz")" = "503" ]; then
    draining=yes
    break
  fi
  sleep 0.1
done
[ -n "$draining" ] || fail "/healthz did not turn 503 after SIGTERM"
code="$(timeout 60 docker wait "$name")" || fail "the relay did not exit within 60 s of SIGTERM"
[ "$code" = "0" ] || fail "the relay exited with ${code} after SIGTERM"
echo "${PLATFORM}: image passed (health, metrics auth, end-to-end, SIGTERM drain, exit 0)"
