# syntax=docker/dockerfile:1
# tokenplace-relay image: multi-stage, production dependencies only, non-root UID 1000, works with a
# read-only root filesystem (writes nothing; mount an emptyDir at /tmp anyway).
#
# Base: Node 24 LTS on Debian bookworm, pinned by exact tag AND digest. The digest is the
# multi-arch index (linux/amd64 + linux/arm64) of node:24.21.0-bookworm-slim as other public
# projects pin it; it could not be checked against the registry from the development machines (no
# registry access there), so the OCI workflow's first pull resolves it. CI (.ci/run) runs the test
# suite on the same Node version (scripts/install-node.sh); bump the three together, deliberately
# (docker buildx imagetools inspect node:24.21.0-bookworm-slim).
ARG NODE_IMAGE=node:24.21.0-bookworm-slim@sha256:2fe369e969550cde8e867afc3fe370b260140cab4a23d467074295b42163d553

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV CI=true \
    NPM_CONFIG_AUDIT=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_UPDATE_NOTIFIER=false
# Dependencies first (cached until the lockfile changes); no install scripts run.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
COPY scripts/build-ui.mjs ./scripts/
COPY public/ ./public/
COPY src/ ./src/
# dist/ (nest build) and public/static/ (the browser bundle), then drop the dev dependencies and
# the scope folders npm prune leaves behind empty (@jest, @swc ...).
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts \
 && find node_modules -mindepth 1 -maxdepth 1 -type d -name '@*' -empty -delete \
 && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="tokenplace-relay" \
      org.opencontainers.image.description="token.place relay: routes end-to-end encrypted envelopes between clients and compute nodes" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
ENV NODE_ENV=production \
    RELAY_HOST=0.0.0.0 \
    RELAY_PORT=5010 \
    TOKENPLACE_IMAGE_TAG=${VERSION} \
    TOKENPLACE_GIT_SHA=${REVISION}
WORKDIR /app
# Owned by root and not writable by the relay's user: the code cannot be modified at run time.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/public ./public
# The official image's `node` user: UID/GID 1000, numeric so runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 5010
# Node is PID 1 and handles SIGTERM itself (readiness 503, drain window, exit 0); the relay starts
# no child processes, so no init is needed to reap zombies (`docker run --init` is harmless).
STOPSIGNAL SIGTERM
# For docker/compose only; Kubernetes uses the chart's probes.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.RELAY_PORT||5010)+'/livez').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form, no shell: signals reach node directly. Other entry points of the same image:
#   docker run --rm IMAGE /app/dist/smoke/smoke.js https://staging.token.place --token ...
ENTRYPOINT ["node"]
CMD ["/app/dist/main.js"]
