// The client matrix's user workflow through @kubernetes/client-node 1.x, with its informer:
// list nodes; create a DaemonSet; follow its pods with an informer until all are Ready; patch
// its image (strategic merge); wait for the rollout as `kubectl rollout status` does; follow a
// pod's log; delete with propagation Orphan. Prints one JSON line: what the test checks.
//   node workflow.mjs KUBECONFIG NAME
import * as k8s from '@kubernetes/client-node';
import { PassThrough } from 'node:stream';

const [kubeconfig, name] = process.argv.slice(2);
const kc = new k8s.KubeConfig();
kc.loadFromFile(kubeconfig);
const core = kc.makeApiClient(k8s.CoreV1Api);
const apps = kc.makeApiClient(k8s.AppsV1Api);
const namespace = 'default';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ready = (pod) => (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

async function until(what, check, seconds = 90) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    const value = await check();
    if (value) return value;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const nodes = (await core.listNode()).items.map((n) => n.metadata.name).sort();
await apps.createNamespacedDaemonSet({
  namespace,
  body: {
    apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name },
    spec: {
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'c', image: 'busybox:1.36', command: ['sh', '-c', 'echo started on $(hostname); sleep 3600'] }],
        },
      },
    },
  },
});

// An informer, as controllers written with this client follow objects.
const selector = `app=${name}`;
const informer = k8s.makeInformer(
  kc,
  `/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(selector)}`,
  () => core.listNamespacedPod({ namespace, labelSelector: selector }),
);
const readyPods = new Set();
const onPod = (pod) => { if (ready(pod)) readyPods.add(pod.metadata.name); };
informer.on('add', onPod);
informer.on('update', onPod);
await informer.start();
await until('three Ready pods through the informer', () => readyPods.size === 3);
await informer.stop();

await apps.patchNamespacedDaemonSet(
  { name, namespace, body: { spec: { template: { spec: { containers: [{ name: 'c', image: 'busybox:1.37' }] } } } } },
  k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
);
const rolledOut = await until('the rollout', async () => {
  const ds = await apps.readNamespacedDaemonSet({ name, namespace });
  const st = ds.status ?? {};
  const done = ds.metadata.generation <= (st.observedGeneration ?? 0)
    && st.updatedNumberScheduled === st.desiredNumberScheduled
    && st.numberAvailable === st.desiredNumberScheduled;
  return done ? st : null;
});

const pods = (await core.listNamespacedPod({ namespace, labelSelector: selector })).items;
const out = new PassThrough();
let logged = '';
out.on('data', (chunk) => { logged += chunk.toString(); });
const request = await new k8s.Log(kc).log(namespace, pods[0].metadata.name, 'c', out, { follow: true });
await until('a followed log line', () => logged.includes('\n'), 30);
request.abort();

await apps.deleteNamespacedDaemonSet({ name, namespace, propagationPolicy: 'Orphan' });
console.log(JSON.stringify({
  nodes,
  ready: readyPods.size,
  updated: rolledOut.updatedNumberScheduled,
  firstLine: logged.split('\n')[0],
  pods: pods.map((p) => p.metadata.name).sort(),
}));
process.exit(0);
