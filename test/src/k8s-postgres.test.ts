// k8s/postgres: the PostgreSQL side (issue 15 item 2). The StatefulSet of
// the official postgres image gets cairn from an initContainer (a copy of the
// cairn image's /opt/cairn into an emptyDir at /cairn), archives through
// /cairn/bin/cairn-wal-push with settings from the mounted
// /etc/cairn/cairn.conf and the key from a Secret, never from CAIRN_*
// variables; the restore example writes a restore_command that names
// cairn-wal-get where the postgres container has it. Every cairn command
// line passes the tool's own flag check, and names an executable the release
// tree has.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { invocationProblem, toolOfExecutable } from './tool-args.js';

const root = new URL('../../', import.meta.url).pathname;
const dir = join(root, 'k8s', 'postgres');

function parse(path: string): Record<string, any>[] {
  const docs = parseAllDocuments(readFileSync(path, 'utf8'), { version: '1.1' });
  for (const d of docs) assert.deepEqual(d.errors.map((e) => e.message), [], `${path} parses`);
  return docs.map((d) => d.toJS()).filter((v) => v !== null && v !== undefined);
}

const kustomization = parse(join(dir, 'kustomization.yaml'))[0]!;
const sts = parse(join(dir, 'statefulset-postgres.yaml'))[0]!;
const restoreJob = parse(join(dir, 'examples', 'job-restore.yaml'))[0]!;
const pod = sts['spec']['template']['spec'];
const postgres = pod['containers'].find((c: any) => c['name'] === 'postgres');
const COPY = '/cairn';

/** The -c settings of the postgres container's args. */
function settings(): Map<string, string> {
  const args: string[] = postgres['args'];
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    if (args[i] !== '-c') continue;
    const [k, ...v] = args[++i]!.split('=');
    out.set(k!, v.join('='));
  }
  return out;
}

/** A command line as PostgreSQL's %-expanded shell command: words split on spaces (no quoting in ours). */
async function checkCommand(line: string, tool: string): Promise<void> {
  const [exe, ...args] = line.split(' ');
  assert.ok(exe!.startsWith(`${COPY}/bin/`), `${line}: runs from the copy in ${COPY}/bin`);
  assert.equal(toolOfExecutable(exe!), tool, `${line}: calls cairn-${tool}`);
  // The release tree's bin/ holds cairn-<tool> for every tool (scripts/package.mjs).
  assert.ok(readdirSync(join(root, 'tools')).includes(tool), `cairn-${tool} is a tool of this tree`);
  assert.equal(await invocationProblem(tool, args), undefined);
}

test('kustomization lists exactly the manifests present (examples/ excepted)', () => {
  const present = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml').sort();
  assert.deepEqual([...kustomization['resources']].sort(), present);
});

test('the postgres container gets cairn from the initContainer, copied from the cairn image into an emptyDir', () => {
  const copy = pod['initContainers'].find((c: any) => c['image'] === 'cairn');
  assert.ok(copy, 'an initContainer runs the cairn image');
  assert.deepEqual(copy['command'], ['/bin/cp', '-a', '/opt/cairn/.', `${COPY}/`], 'it copies the installed tree (install.sh --prefix /opt/cairn)');
  const vol = (c: any) => c['volumeMounts'].find((m: any) => m['mountPath'] === COPY)?.['name'];
  assert.equal(vol(copy), vol(postgres), 'both mount the same volume at /cairn');
  assert.ok(pod['volumes'].find((v: any) => v['name'] === vol(copy))['emptyDir'], 'an emptyDir');
  assert.match(postgres['image'], /^postgres:\d+$/, 'the official image');
});

test('archive_command runs /cairn/bin/cairn-wal-push; the settings come from the mounted /etc/cairn/cairn.conf, not CAIRN_* variables', async () => {
  const s = settings();
  assert.equal(s.get('archive_mode'), 'on');
  assert.equal(s.get('wal_level'), 'replica');
  await checkCommand(s.get('archive_command')!, 'wal-push');
  const env: string[] = (postgres['env'] ?? []).map((e: any) => e['name']);
  assert.deepEqual(env.filter((n) => n.startsWith('CAIRN_') || n.startsWith('AWS_')), [], 'no cairn or AWS settings in the environment');
  assert.deepEqual(postgres['envFrom'] ?? [], []);
  const mount = (path: string) => postgres['volumeMounts'].find((m: any) => m['mountPath'] === path);
  const volume = (name: string) => pod['volumes'].find((v: any) => v['name'] === name);
  assert.equal(volume(mount('/etc/cairn')['name'])['configMap']['name'], 'cairn-config', '/etc/cairn/cairn.conf is the base\'s ConfigMap');
  const key = volume(mount('/etc/cairn-key')['name'])['secret'];
  assert.equal(key['secretName'], 'cairn-encryption-key');
  assert.equal(key['defaultMode'] & 0o007, 0, 'the key is not readable by others');
  // The base's cairn.conf names the key where this pod mounts it.
  const base = parse(join(root, 'k8s', 'base', 'configmap.yaml')).find((d) => d['metadata']['name'] === 'cairn-config')!;
  assert.match(base['data']['cairn.conf'], /^encryption-key-file = \/etc\/cairn-key\/key$/m);
  for (const m of postgres['volumeMounts'].filter((x: any) => x['mountPath'] !== '/var/lib/postgresql/data')) assert.equal(m['readOnly'], true, `${m['mountPath']} read-only`);
});

test('the restore example writes a restore_command for the postgres container\'s copy, and its flags pass', async () => {
  const c = restoreJob['spec']['template']['spec']['containers'][0];
  const [exe, ...rest] = c['command'] as string[];
  const args = [...rest, ...(c['args'] as string[])];
  assert.equal(toolOfExecutable(exe!), 'restore');
  assert.equal(await invocationProblem('restore', args), undefined);
  await checkCommand(args[args.indexOf('--restore-command') + 1]!, 'wal-get');
  const claim = restoreJob['spec']['template']['spec']['volumes'].find((v: any) => v['persistentVolumeClaim'])['persistentVolumeClaim']['claimName'];
  assert.equal(claim, `${sts['spec']['volumeClaimTemplates'][0]['metadata']['name']}-${sts['metadata']['name']}-0`, 'the StatefulSet\'s first volume');
});
