// The cairn-rekey command: the old key (--old-key-file / --old-key-command,
// else the configured encryption key) and the new key (--new-key-file /
// --new-key-command) in, one line per repository out.

import { CairnError, ERROR_CODES, EXIT, type ErrorCode } from '@cairn/core/cli/errors';
import { defineTool } from '@cairn/core/cli/run';
import { loadKey, repoSettingsFrom, type KeySource } from '@cairn/core/repo/repositories';
import { rekey } from './rekey.js';

function keySource(file: string | undefined, command: string | undefined, which: 'old' | 'new'): KeySource | undefined {
  if (file !== undefined && command !== undefined) {
    throw new CairnError('USAGE', `both --${which}-key-file and --${which}-key-command are given`, { hint: `give one of them` });
  }
  if (file !== undefined) return { keyFile: file };
  if (command !== undefined) return { keyFile: undefined, keyCommand: command };
  return undefined;
}

export const rekeyTool = defineTool({
  name: 'rekey',
  description:
    'rotate the encryption key: wrap the cluster\'s data key with a new key in a new object in each repository (nothing is re-encrypted). ' +
    'Afterwards the new key opens everything written before and the old key no longer opens the cluster; give the new key to every host and job. ' +
    'Exit: 0 every repository rotated, 2 usage, 3 a key cannot be read or the old key does not open a repository (nothing written there), ' +
    '4 a repository\'s key objects are damaged or another rotation ran at the same time.',
  positionals: [],
  settings: [
    // Keys in flags are file names and commands, never key material (docs/design.md §4.8).
    { name: 'old-key-file', type: 'string', description: 'file holding the key in use (default: --encryption-key-file / --encryption-key-command)', valueHint: 'FILE', flagOnly: true },
    { name: 'old-key-command', type: 'string', description: 'command that prints the key in use (no shell)', valueHint: 'CMD', flagOnly: true },
    { name: 'new-key-file', type: 'string', description: 'file holding the new key', valueHint: 'FILE', flagOnly: true },
    { name: 'new-key-command', type: 'string', description: 'command that prints the new key (no shell)', valueHint: 'CMD', flagOnly: true },
  ],
  examples: [
    'cairn-rekey --old-key-file /etc/cairn/key --new-key-file /etc/cairn/key.new',
    "cairn-rekey --old-key-command 'vault kv get -field=key secret/cairn/2026' --new-key-command 'vault kv get -field=key secret/cairn/2027'",
  ],
  async run(ctx) {
    const s = ctx.settings;
    const repo = repoSettingsFrom(s, ctx.log);
    const oldSource = keySource(s['old-key-file'], s['old-key-command'], 'old') ?? (repo.keyFile !== undefined || repo.keyCommand !== undefined ? repo : undefined);
    const newSource = keySource(s['new-key-file'], s['new-key-command'], 'new');
    if (oldSource === undefined) {
      throw new CairnError('USAGE', 'no old key: give --old-key-file or --old-key-command (or configure the encryption key in use)', { hint: 'cairn-rekey --old-key-file OLD --new-key-file NEW' });
    }
    if (newSource === undefined) throw new CairnError('USAGE', 'no new key: give --new-key-file or --new-key-command', { hint: 'make one with: head -c 32 /dev/urandom | base64 > key.new && chmod 600 key.new' });
    const oldKey = (await loadKey(oldSource, ctx.env, ctx.signal))!;
    const newKey = (await loadKey(newSource, ctx.env, ctx.signal))!;
    const r = await rekey({ repos: repo.repos, cluster: repo.cluster, oldKey, newKey }, ctx);
    if (s.json) ctx.stdout.write(JSON.stringify(r, null, 2) + '\n');
    for (const x of r.results) {
      if (!s.json) {
        ctx.stdout.write(`repository "${x.repo}" cluster "${x.cluster}": data key ${x.dataKeyId} now wrapped by key ${x.newKeyId} (version ${x.version}; was key ${x.oldKeyId}${x.fromVersion === 0 ? ', which encrypted the cluster directly' : `, version ${x.fromVersion}`})\n`);
      }
      for (const k of x.kept) {
        ctx.log.warn(`superseded key object "${k.key}" in repository "${x.repo}" could not be removed (${k.reason}): cairn no longer accepts the old key, but the object still holds the data key under it; remove it once its retention ends`);
      }
    }
    for (const e of r.errors) ctx.log.error(`${e.message}${e.hint === null ? '' : `; ${e.hint}`}`);
    if (r.errors.length === 0) return EXIT.OK;
    // Each repository's own status (3 key or configuration, 4 damaged key object or a concurrent rotation); the highest wins.
    return Math.max(...r.errors.map((e) => ERROR_CODES[e.code as ErrorCode] ?? EXIT.INTERNAL));
  },
});
