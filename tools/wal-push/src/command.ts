// The cairn-wal-push command: flags and settings in, walPush() called.

import { isAbsolute, resolve } from 'node:path';
import { realpathSync } from 'node:fs';
import { defineTool } from '@cairn/core/cli/run';
import { CairnError, EXIT } from '@cairn/core/cli/errors';
import { COMPRESS_SETTING, SPOOL_SETTING, SYSTEM_ID_SETTING } from '@cairn/core/config/settings';
import { parseCompress } from '@cairn/core/codec/index';
import { repoSettingsFrom } from '@cairn/core/repo/repositories';
import { planSpool } from '@cairn/core/spool/spool-dir';
import { walPush } from './wal-push.js';
import { assertReadableFile } from '@cairn/core/util/user-path';

export const walPushTool = defineTool({
  name: 'wal-push',
  description: 'archive a WAL file into the repositories (archive_command)',
  positionals: [
    { name: 'path', description: 'the file to archive (%p, relative to the data directory)', required: true },
    { name: 'name', description: 'its WAL file name (%f); defaults to the last part of path', required: false },
  ],
  settings: [
    COMPRESS_SETTING,
    SPOOL_SETTING,
    SYSTEM_ID_SETTING,
    { name: 'push-ahead', type: 'integer', description: 'files the background push-ahead worker takes per scan of archive_status/ (0: no worker)', default: 32, valueHint: 'N' },
    { name: 'concurrency', type: 'integer', description: 'files the push-ahead worker archives at once (compression never runs wider than the cores)', default: 4, valueHint: 'N', min: 1, max: 64 },
    { name: 'register-system', type: 'boolean', description: 'register this server\'s system identifier although the cluster holds another (after initdb or pg_upgrade)', default: false },
  ],
  examples: [
    "archive_command = 'cairn-wal-push %p %f'",
    'CAIRN_REPO=s3://bucket/pg?region=eu-west-1 cairn-wal-push pg_wal/000000010000000000000003',
  ],
  async run(ctx) {
    const s = ctx.settings;
    const [path, givenName] = ctx.positionals as [string, string | undefined];
    const walPath = isAbsolute(path) ? path : resolve(ctx.cwd, path);
    const walName = givenName ?? walPath.slice(walPath.lastIndexOf('/') + 1);
    const repo = repoSettingsFrom(s, ctx.log);
    assertReadableFile(walPath, 'WAL file'); // a FIFO would block the archiver for ever
    const compress = parseCompress(s.compress);
    const { 'push-ahead': pushAhead, concurrency } = s;
    // The spool is keyed by the physical data directory and the whole call
    // (the bin wrapper computes the same context from its cwd, argv and env).
    let pgdata = ctx.cwd;
    try {
      pgdata = realpathSync(ctx.cwd);
    } catch { /* keep cwd */ }
    const spool = planSpool(s['spool-dir'], { cwd: pgdata, argv: ctx.argv, positionals: ctx.positionals, env: ctx.env });
    const result = await walPush({
      walPath,
      walName,
      repos: repo.repos,
      cluster: repo.cluster,
      compress,
      keyFile: repo.keyFile,
      keyCommand: repo.keyCommand,
      pgdata: ctx.cwd,
      systemId: s['system-id'],
      registerSystem: s['register-system'],
      pushAhead,
      concurrency,
      spool,
    }, ctx);
    if (s.json) ctx.stdout.write(JSON.stringify(result) + '\n');
    return EXIT.OK;
  },
});
