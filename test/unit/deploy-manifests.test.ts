import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseServeOptions } from '../../gateway/options.js';
import { parseWorkerArgs } from '../../worker/cli-args.js';

// The manifests under deploy/ (Kubernetes, KServe) checked without a
// cluster: every document parses and names its kind; every Fabriek container
// runs a command line that `fabriek serve` / `fabriek worker` accept, so a
// renamed flag breaks this test rather than a rollout; and the KServe
// runtime and InferenceServices agree on names, formats, protocols, ports
// and the /mnt/models path KServe mounts.

const DEPLOY = fileURLToPath(new URL('../../deploy', import.meta.url));

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  readinessProbe?: { httpGet?: { path: string; port: number | string } };
  livenessProbe?: { httpGet?: { path: string; port: number | string } };
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec?: Record<string, unknown>;
}

function manifests(dir: string): { file: string; doc: Manifest }[] {
  const out: { file: string; doc: Manifest }[] = [];
  for (const name of readdirSync(join(DEPLOY, dir)).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')) {
    for (const doc of parseAllDocuments(readFileSync(join(DEPLOY, dir, name), 'utf8'))) {
      expect(doc.errors, `${dir}/${name}`).toEqual([]);
      out.push({ file: `${dir}/${name}`, doc: doc.toJS() as Manifest });
    }
  }
  return out;
}

/** Every container of a workload, a runtime or a pod spec, found wherever `containers` is. */
function containersOf(node: unknown): Container[] {
  if (Array.isArray(node)) return node.flatMap(containersOf);
  if (typeof node !== 'object' || node === null) return [];
  const record = node as Record<string, unknown>;
  const own = Array.isArray(record.containers) ? (record.containers as Container[]) : [];
  return [...own, ...Object.entries(record).filter(([k]) => k !== 'containers').flatMap(([, v]) => containersOf(v))];
}

const isFabriek = (c: Container): boolean => c.image.startsWith('ghcr.io/fabriek/fabriek') && c.command === undefined;

describe('deploy/ manifests', () => {
  const all = [...manifests('k8s'), ...manifests('kserve')];

  it('every document parses, with apiVersion, kind and a name', () => {
    expect(all.length).toBeGreaterThan(10);
    for (const { file, doc } of all) {
      expect(typeof doc.apiVersion, file).toBe('string');
      expect(typeof doc.kind, file).toBe('string');
      expect(doc.metadata?.name, `${file} ${doc.kind}`).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
  });

  it("every Fabriek container's arguments are accepted by fabriek serve or fabriek worker", () => {
    const checked: string[] = [];
    for (const { file, doc } of all) {
      for (const c of containersOf(doc.spec).filter(isFabriek)) {
        const [cmd, ...rest] = c.args ?? [];
        if (cmd === 'serve') parseServeOptions(rest);
        else if (cmd === 'worker') parseWorkerArgs(rest);
        else throw new Error(`${file}: container ${c.name} runs '${cmd}', expected serve or worker`);
        checked.push(`${file}:${cmd}`);
      }
    }
    expect(checked).toEqual(
      expect.arrayContaining(['k8s/gateway.yaml:serve', 'k8s/worker.yaml:worker', 'kserve/serving-runtime.yaml:serve']),
    );
  });

  it('KServe: the runtimes serve /mnt/models with v2 on 8080 (HTTP) and 8081 (gRPC), probed where they listen', () => {
    const runtimes = all.filter((m) => m.doc.kind === 'ClusterServingRuntime');
    expect(runtimes.map((r) => r.doc.metadata.name)).toEqual(['fabriek', 'fabriek-gpu']);
    for (const { doc } of runtimes) {
      expect(doc.apiVersion).toBe('serving.kserve.io/v1alpha1');
      const spec = doc.spec as { protocolVersions: string[]; supportedModelFormats: { name: string }[]; containers: Container[] };
      expect(spec.protocolVersions).toEqual(['v2', 'grpc-v2']);
      expect(spec.supportedModelFormats.map((f) => f.name)).toContain('onnx');
      // KServe injects the storage initializer and routes to the container of this name.
      const [container] = spec.containers;
      expect(spec.containers.length).toBe(1);
      expect(container?.name).toBe('kserve-container');
      const options = parseServeOptions((container?.args ?? []).slice(1));
      expect(options).toMatchObject({ modelRepository: '/mnt/models', httpPort: 8080, grpcPort: 8081, allowHttp: true });
      for (const probe of [container?.readinessProbe, container?.livenessProbe]) expect(probe?.httpGet?.port).toBe(options.httpPort);
      expect(container?.readinessProbe?.httpGet?.path).toBe('/v2/health/ready');
    }
  });

  it('KServe: each example InferenceService names a runtime that exists and supports its format and protocol', () => {
    const runtimes = new Map(all.filter((m) => m.doc.kind === 'ClusterServingRuntime').map((r) => [r.doc.metadata.name, r.doc.spec as Record<string, unknown>]));
    const services = all.filter((m) => m.doc.kind === 'InferenceService');
    expect(services.length).toBeGreaterThan(0);
    for (const { doc } of services) {
      expect(doc.apiVersion).toBe('serving.kserve.io/v1beta1');
      const model = (doc.spec as { predictor: { model: { modelFormat: { name: string }; runtime: string; protocolVersion: string; storageUri: string; ports?: { containerPort: number }[] } } }).predictor.model;
      const runtime = runtimes.get(model.runtime) as { supportedModelFormats: { name: string }[]; protocolVersions: string[]; containers: Container[] } | undefined;
      expect(runtime, `${doc.metadata.name}: runtime ${model.runtime}`).toBeDefined();
      expect(runtime?.supportedModelFormats.map((f) => f.name)).toContain(model.modelFormat.name);
      expect(runtime?.protocolVersions).toContain(model.protocolVersion);
      expect(model.storageUri).toMatch(/^(s3|gs|pvc|https?):\/\//);
      const grpcPort = parseServeOptions((runtime?.containers[0]?.args ?? []).slice(1)).grpcPort;
      for (const p of model.ports ?? []) expect(p.containerPort).toBe(grpcPort);
    }
  });
});
