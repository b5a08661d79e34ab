// k8s/: the kustomize base and the Dockerfile. Every manifest parses, the
// kustomization lists exactly the files present, the jobs never overlap and
// ask for resources, no credential is written in a manifest, and every
// container's command line is accepted by the cairn tool it calls.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseConfigFile } from '@cairn/core/config/config-file';
import { cronFieldProblem } from './ops-parsers.js';
import { invocationProblem, toolOfExecutable } from './tool-args.js';

const root = new URL('../../', import.meta.url).pathname;
const base = join(root, 'k8s', 'base');
// The image installs the release tarball with install.sh: the tools are
// linked in /usr/local/bin, as scripts/package.mjs's bin/ has them.
const BINDIR = '/usr/local/bin/';

// Kubernetes reads YAML 1.1 (sigs.k8s.io/yaml): parse the same way.
function parseYamlFile(path: string): Record<string, any>[] {
  const docs = parseAllDocuments(readFileSync(path, 'utf8'), { version: '1.1' });
  const out: Record<string, any>[] = [];
  for (const d of docs) {
    assert.deepEqual(d.errors.map((e) => e.message), [], `${path} parses`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : []);
}

const kustomization = parseYamlFile(join(base, 'kustomization.yaml'))[0]!;
const resourceFiles: string[] = kustomization['resources'];
const resources = resourceFiles.flatMap((f) => parseYamlFile(join(base, f)).map((doc) => ({ file: f, doc })));
const examples = yamlFiles(join(base, 'examples')).flatMap((f) => parseYamlFile(f).map((doc) => ({ file: f, doc })));

interface PodOf {
  where: string;
  kind: string;
  spec: Record<string, any>;
}

function pods(): PodOf[] {
  return resources.flatMap(({ file, doc }) => {
    const where = `${file} ${doc['kind']}/${doc['metadata']?.['name']}`;
    if (doc['kind'] === 'CronJob') return [{ where, kind: 'CronJob', spec: doc['spec']['jobTemplate']['spec']['template']['spec'] }];
    if (doc['kind'] === 'Deployment') return [{ where, kind: 'Deployment', spec: doc['spec']['template']['spec'] }];
    return [];
  });
}

function containers(): { where: string; c: Record<string, any> }[] {
  return pods().flatMap((p) => [...(p.spec['initContainers'] ?? []), ...p.spec['containers']].map((c: Record<string, any>) => ({ where: `${p.where} container ${c['name']}`, c })));
}

test('kustomization lists exactly the manifests present (examples/ excepted), each parses as Kubernetes objects', () => {
  const present = readdirSync(base).filter((n) => /\.ya?ml$/.test(n) && n !== 'kustomization.yaml').sort();
  assert.deepEqual([...resourceFiles].sort(), present);
  for (const { file, doc } of [...resources, ...examples]) {
    assert.equal(typeof doc['apiVersion'], 'string', `${file}: apiVersion`);
    assert.equal(typeof doc['kind'], 'string', `${file}: kind`);
    assert.match(doc['metadata']?.['name'] ?? '', /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${file}: metadata.name`);
    assert.equal(doc['metadata']['namespace'], undefined, `${file}: no namespace (the overlay sets it)`);
  }
});

test('the base holds the CronJobs, the prom-export Deployment and Service, the ConfigMap and the ServiceAccount', () => {
  const kinds = resources.map(({ doc }) => `${doc['kind']}/${doc['metadata']['name']}`).sort();
  for (const k of ['ConfigMap/cairn-config', 'ServiceAccount/cairn', 'Deployment/cairn-prom-export', 'Service/cairn-prom-export']) assert.ok(kinds.includes(k), k);
  const tools = containers().map(({ c }) => toolOfExecutable(c['command'][0])).sort();
  assert.deepEqual([...new Set(tools)].sort(), ['basebackup', 'drill', 'dump', 'expire', 'prom-export', 'verify']);
  const basebackups = containers().filter(({ c }) => toolOfExecutable(c['command'][0]) === 'basebackup');
  for (const { where, c } of basebackups) assert.ok(c['args'].includes('--remote'), `${where}: stream mode (--remote)`);
});

test('every CronJob: concurrencyPolicy Forbid and a valid schedule; every container: resource requests, non-root, no privilege escalation', () => {
  for (const { file, doc } of resources.filter((r) => r.doc['kind'] === 'CronJob')) {
    assert.equal(doc['spec']['concurrencyPolicy'], 'Forbid', `${file}: concurrencyPolicy`);
    const fields = String(doc['spec']['schedule']).split(' ');
    assert.equal(fields.length, 5, `${file}: five schedule fields`);
    fields.forEach((f, i) => assert.equal(cronFieldProblem(f, i), undefined, `${file}: schedule`));
  }
  for (const p of pods()) {
    assert.equal(p.spec['securityContext']?.['runAsNonRoot'], true, `${p.where}: runAsNonRoot`);
    assert.equal(p.spec['securityContext']?.['runAsUser'], 999, `${p.where}: runs as the image's postgres (999)`);
    assert.equal(p.spec['serviceAccountName'], 'cairn', `${p.where}: the IRSA ServiceAccount`);
  }
  for (const { where, c } of containers()) {
    assert.ok(c['resources']?.['requests']?.['cpu'], `${where}: cpu request`);
    assert.ok(c['resources']?.['requests']?.['memory'], `${where}: memory request`);
    assert.ok(c['resources']?.['limits']?.['memory'], `${where}: memory limit`);
    assert.equal(c['securityContext']?.['allowPrivilegeEscalation'], false, `${where}: allowPrivilegeEscalation`);
    assert.equal(c['image'], 'cairn', `${where}: the image kustomize's images: entry names`);
  }
});

test('no credentials in the manifests: secret-like env vars come from Secrets, the repository URL carries none, Secrets are examples outside the kustomization', () => {
  const secretName = /PASSWORD|SECRET|KEY|TOKEN/i;
  for (const { where, c } of containers()) {
    for (const e of c['env'] ?? []) {
      if (secretName.test(e['name'])) {
        assert.equal(e['value'], undefined, `${where}: env ${e['name']} has no literal value`);
        assert.ok(e['valueFrom']?.['secretKeyRef'], `${where}: env ${e['name']} comes from a Secret`);
      }
    }
  }
  assert.deepEqual(resources.filter((r) => r.doc['kind'] === 'Secret').map((r) => r.file), [], 'no Secret is applied by the base');
  for (const { file, doc } of examples.filter((r) => r.doc['kind'] === 'Secret')) {
    assert.equal(doc['data'], undefined, `${file}: no base64 data`);
    for (const [k, v] of Object.entries(doc['stringData'] ?? {})) assert.match(String(v), /^REPLACE/, `${file}: ${k} is a placeholder`);
  }
  for (const { file, doc } of resources.filter((r) => r.doc['kind'] === 'ConfigMap')) {
    for (const [k, v] of Object.entries<string>(doc['data'] ?? {})) {
      assert.doesNotMatch(k, secretName, `${file}: ConfigMap key ${k}`);
      assert.doesNotMatch(v, /aws_secret_access_key|aws_access_key_id|password\s*=|:\/\/[^/\s]*@/i, `${file}: ConfigMap ${k} holds no credential`);
    }
  }
  const conf = resources.find((r) => r.doc['kind'] === 'ConfigMap' && r.doc['metadata']['name'] === 'cairn-config')!.doc['data']['cairn.conf'];
  const sections = parseConfigFile(conf, 'cairn-config/cairn.conf');
  const repos = sections.get('global')?.get('repo') ?? [];
  assert.ok(repos.length > 0 && repos.every((r) => r.startsWith('s3://')), 'an s3:// repository');
  assert.ok(sections.get('global')?.get('cluster'), 'the cluster is set');
  const sa = resources.find((r) => r.doc['kind'] === 'ServiceAccount')!.doc;
  assert.match(sa['metadata']['annotations']['eks.amazonaws.com/role-arn'], /^arn:aws:iam::\d{12}:role\//, 'IRSA role annotation');
});

test('every container command is a built cairn bin and its args are accepted by the tool', async () => {
  const problems: string[] = [];
  for (const { where, c } of containers()) {
    const [exe, ...rest] = c['command'] as string[];
    assert.ok(exe!.startsWith(BINDIR), `${where}: command is a bin of the image (${BINDIR})`);
    assert.ok(existsSync(join(root, 'node_modules/.bin', exe!.slice(BINDIR.length))), `${where}: ${exe} is built (the package links every bin)`);
    const tool = toolOfExecutable(exe!);
    assert.ok(tool, `${where}: calls a cairn tool`);
    const p = await invocationProblem(tool, [...rest, ...((c['args'] ?? []) as unknown[]).map(String)]);
    if (p) problems.push(`${where}: ${p}`);
  }
  assert.deepEqual(problems, []);
});

test('prom-export: the Deployment listens on the port the Service targets', () => {
  const dep = resources.find((r) => r.doc['kind'] === 'Deployment')!.doc;
  const svc = resources.find((r) => r.doc['kind'] === 'Service')!.doc;
  const c = dep['spec']['template']['spec']['containers'][0];
  const listen = c['args'][c['args'].indexOf('--listen') + 1];
  const port = c['ports'].find((p: any) => p['name'] === svc['spec']['ports'][0]['targetPort']);
  assert.ok(port, 'the Service targets a named container port');
  assert.equal(Number(String(listen).split(':').at(-1)), port['containerPort']);
  for (const [k, v] of Object.entries(svc['spec']['selector'])) assert.equal(dep['spec']['template']['metadata']['labels'][k], v, `selector ${k}`);
});

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });

test('kubectl kustomize renders the base', { skip: kubectl.status === 0 ? false : 'kubectl is not installed' }, () => {
  const r = spawnSync('kubectl', ['kustomize', base], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const docs = parseAllDocuments(r.stdout, { version: '1.1' }).map((d) => d.toJS() as Record<string, any>);
  assert.equal(docs.length, resources.length);
  const images = docs.flatMap((d) => JSON.stringify(d).match(/"image":"[^"]*"/g) ?? []);
  assert.ok(images.length > 0 && images.every((i) => i !== '"image":"cairn"'), 'the images: entry replaced every image');
});

// ---- deploy/docker/Dockerfile (static; scripts/ci-containers.sh builds and runs it) ----

const dockerfile = readFileSync(join(root, 'deploy', 'docker', 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
const instructions = dockerfile.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));

test('Dockerfile: installs the release tarball on BASE (default Debian slim) with no npm or build inside, PostgreSQL from Debian or PGDG, uid 999', () => {
  const args = new Map(instructions.filter((l) => /^ARG \w+=/.test(l)).map((l) => l.slice(4).split('=') as [string, string]));
  assert.equal(args.get('BASE'), 'debian:bookworm-slim');
  assert.equal(args.get('PG_MAJOR'), '15');
  assert.equal(args.get('PG_SOURCE'), 'debian');
  assert.doesNotMatch(instructions.join('\n'), /\bnpm\b|\bnpx\b|turbo|tsc\b/, 'no npm and no TypeScript build in the image');
  // The tarball scripts/package.mjs writes is the only thing taken from the context, and install.sh installs it.
  assert.match(readFileSync(join(root, 'scripts/package.mjs'), 'utf8'), /join\(out, `\$\{name\}-linux-x64\.tar\.gz`\)/);
  const fromContext = instructions.filter((l) => /^(COPY|ADD) /.test(l) && !l.includes('--from='));
  assert.deepEqual(fromContext.map((l) => l.split(/\s+/)[1]), ['cairn-*-linux-x64.tar.gz']);
  assert.match(dockerfile, /install\.sh --prefix \/opt\/cairn --bindir /);
  assert.match(dockerfile, /"postgresql-\$\{PG_MAJOR\}" "postgresql-client-\$\{PG_MAJOR\}"/, 'server binaries too, for cairn-drill');
  assert.match(dockerfile, /debian\) apt-get update ;;/);
  assert.match(dockerfile, /pgdg\)/);
  assert.match(instructions.filter((l) => l.startsWith('USER ')).at(-1) ?? '', /^USER 999:999$/, 'runs as uid 999');
  const entry = JSON.parse(instructions.find((l) => l.startsWith('ENTRYPOINT '))!.slice('ENTRYPOINT '.length)) as string[];
  assert.equal(entry[0], `${BINDIR}cairn`);
});

test('postgres.Dockerfile: the documented two lines, cairn from the cairn image into an official postgres image', () => {
  const pg = readFileSync(join(root, 'deploy', 'docker', 'postgres.Dockerfile'), 'utf8');
  const lines = pg.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  assert.deepEqual(lines.filter((l) => l.startsWith('COPY ')), ['COPY --from=cairn /opt/cairn /opt/cairn']);
  assert.match(pg, /^ARG POSTGRES_IMAGE=postgres:\d+$/m);
  assert.match(pg, /^#\s+COPY --from=cairn:[\d.]+ \/opt\/cairn \/opt\/cairn$/m, 'the recipe for a Dockerfile of one\'s own');
});
