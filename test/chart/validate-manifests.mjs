// Validates rendered Kubernetes manifests with kubernetes-models (ESM-only, hence a child process
// of the Jest suite). stdin: a JSON array of objects; stdout: a JSON array of
// { index, kind, name, error } for every object that failed, or that has no model.

const GROUPS = {
  v1: 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'networking.k8s.io/v1': 'kubernetes-models/networking.k8s.io/v1',
  'policy/v1': 'kubernetes-models/policy/v1',
  'autoscaling/v2': 'kubernetes-models/autoscaling/v2',
  'monitoring.coreos.com/v1': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
};

const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}
const docs = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const problems = [];
for (const [index, doc] of docs.entries()) {
  const where = { index, kind: doc?.kind, name: doc?.metadata?.name };
  const module = GROUPS[doc?.apiVersion];
  if (!module) {
    problems.push({ ...where, error: `no model for apiVersion ${doc?.apiVersion}` });
    continue;
  }
  const models = await import(`${module}/${doc.kind}`).catch(() => null);
  const Model = models?.[doc.kind];
  if (!Model) {
    problems.push({ ...where, error: `no model for ${doc.apiVersion} ${doc.kind}` });
    continue;
  }
  try {
    new Model(doc).validate();
  } catch (error) {
    problems.push({ ...where, error: String(error?.message ?? error) });
  }
}
process.stdout.write(JSON.stringify(problems));
