// The cairn-wal-get command: flags and settings in, walGet() called, and the
// restore_command exit statuses: 0 written, 1 not in any repository, 126 any
// error (usage and configuration errors included: PostgreSQL reads 1–125 as
// "not found" and would end recovery early).

import { realpathSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { defineTool } from '@cairn/core/cli/run';
import { CairnError, EXIT } from '@cairn/core/cli/errors';
import { SPOOL_SETTING, SYSTEM_ID_SETTING } from '@cairn/core/config/settings';
import { repoSettingsFrom } from '@cairn/core/repo/repositories';
import { WAL_GET_EXIT, WRAPPED_ENV, WRAPPED_VALUE } from '@cairn/core/spool/contract';
import { planSpool } from '@cairn/core/spool/spool-dir';
import { isReaderLeaseId, parseExpectation } from '@cairn/core/repo/reader-lease';
import { walGet } from './wal-get.js';

/**
 * The bin wrapper sets CAIRN_WRAPPED: then "not found" is 99, which it turns
 * into 1, and any other failure (Node itself failing to start exits 1 too)
 * into 126, so a broken install can never read as "not in the archive".
 */
function notFoundStatus(env: NodeJS.ProcessEnv): number {
  return env[WRAPPED_ENV] === WRAPPED_VALUE ? WAL_GET_EXIT.WRAPPED_NOT_FOUND : WAL_GET_EXIT.NOT_FOUND;
}

export const walGetTool = defineTool({
  name: 'wal-get',
  description: 'fetch a WAL file from the repositories (restore_command): the first that has it; one missing or damaged there is taken from the next holding it with the same SHA-256, with a warning',
  positionals: [
    { name: 'name', description: 'the WAL file name PostgreSQL asks for (%f)', required: true },
    { name: 'path', description: 'where to write it (%p, relative to the data directory)', required: true },
  ],
  settings: [
    SPOOL_SETTING,
    SYSTEM_ID_SETTING,
    { name: 'prefetch', type: 'integer', description: 'segments to fetch ahead in the background (0: off)', default: 8, valueHint: 'N', max: 1024 },
    { name: 'prefetch-concurrency', type: 'integer', description: 'segments the prefetch worker fetches at once', default: 4, valueHint: 'N', min: 1, max: 64 },
    { name: 'retries', type: 'integer', description: 'extra attempts after a transient repository error, with doubling backoff from 0.5 s', default: 4, valueHint: 'N', max: 20 },
    { name: 'lease', type: 'string', description: 'the reader lease of the restore that wrote this restore_command: renewed while recovery runs', valueHint: 'ID', flagOnly: true },
    { name: 'expect-through', type: 'list', description: 'WAL the restore\'s plan found (FROM-TO per timeline): such a segment missing now exits 126, never 1', valueHint: 'FROM-TO', flagOnly: true },
    { name: 'errors-as-not-found', type: 'boolean', description: 'exit 1 instead of 126 on persistent errors (for standbys that should keep streaming)', default: false },
  ],
  examples: ["restore_command = 'cairn-wal-get %f %p'"],
  exitFor(_err: CairnError, settings, env) {
    return settings?.['errors-as-not-found'] ? notFoundStatus(env) : EXIT.WAL_GET_PERSISTENT;
  },
  async run(ctx) {
    const s = ctx.settings;
    const [walName, path] = ctx.positionals as [string, string];
    const repo = repoSettingsFrom(s, ctx.log);
    const { prefetch, retries, lease } = s;
    if (lease !== undefined && !isReaderLeaseId(lease)) throw new CairnError('USAGE', `invalid --lease ${JSON.stringify(lease)}`, { hint: 'give the id cairn-restore wrote into restore_command' });
    const expect = s['expect-through'].map(parseExpectation);
    let pgdata = ctx.cwd;
    try {
      pgdata = realpathSync(ctx.cwd);
    } catch { /* keep cwd */ }
    const result = await walGet({
      walName,
      destPath: isAbsolute(path) ? path : resolve(ctx.cwd, path),
      repos: repo.repos,
      cluster: repo.cluster,
      keyFile: repo.keyFile,
      keyCommand: repo.keyCommand,
      pgdata: ctx.cwd,
      systemId: s['system-id'],
      prefetch,
      prefetchConcurrency: s['prefetch-concurrency'],
      spool: planSpool(s['spool-dir'], { cwd: pgdata, argv: ctx.argv, positionals: ctx.positionals, env: ctx.env }),
      retry: { attempts: retries + 1, baseDelayMs: 500 },
      lease,
      expect,
    }, ctx);
    if (s.json) ctx.stdout.write(JSON.stringify(result) + '\n');
    if (!result.found) {
      ctx.log.info(`"${walName}" is not in any repository`);
      return notFoundStatus(ctx.env);
    }
    ctx.log.info(result.source === 'spool' ? `"${walName}" from the prefetch spool` : `"${walName}" from repository "${result.repo}" (${result.bytes} bytes)`);
    return EXIT.OK;
  },
});
