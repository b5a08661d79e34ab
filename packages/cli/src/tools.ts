// The tools the `cairn` dispatcher knows, loaded only when called.

import type { ToolDef } from '@cairn/core/cli/run';

export const TOOLS: Record<string, { summary: string; load: () => Promise<ToolDef> }> = {
  'wal-push': { summary: 'archive a WAL file (archive_command)', load: async () => (await import('@cairn/wal-push/command')).walPushTool },
  'wal-get': { summary: 'fetch a WAL file (restore_command)', load: async () => (await import('@cairn/wal-get/command')).walGetTool },
  basebackup: { summary: 'take a physical backup (full, diff, incr) from PGDATA or a pg_basebackup stream', load: async () => (await import('@cairn/basebackup/command')).basebackupTool },
  'restore-plan': { summary: 'plan a point-in-time restore: the backup chain, the WAL it needs, the recovery settings', load: async () => (await import('@cairn/restore-plan/command')).restorePlanTool },
  restore: { summary: 'restore a backup into a data directory, ready to recover to a target', load: async () => (await import('@cairn/restore/command')).restoreTool },
  dump: { summary: 'take logical dumps (pg_dump) of databases, or --all with roles and tablespaces', load: async () => (await import('@cairn/dump/command')).dumpTool },
  verify: { summary: 'check that every backup, dump and WAL segment in the repository is whole and restorable', load: async () => (await import('@cairn/verify/command')).verifyTool },
  expire: { summary: 'delete backups, dumps and WAL a retention policy no longer keeps', load: async () => (await import('@cairn/expire/command')).expireTool },
  info: { summary: 'show backups, dumps, WAL ranges and the recoverability window', load: async () => (await import('@cairn/info/command')).infoTool },
  drill: { summary: 'prove a restore works: restore into a scratch directory, start PostgreSQL, check, record RTO and data age', load: async () => (await import('@cairn/drill/command')).drillTool },
  check: { summary: 'check that archiving works end to end: repositories writable, settings right, a WAL switch reaches every repository', load: async () => (await import('@cairn/check/command')).checkTool },
  rekey: { summary: 'rotate the encryption key: wrap the data key with a new key (one small object per repository, no re-backup)', load: async () => (await import('@cairn/rekey/command')).rekeyTool },
  copy: { summary: 'copy what another repository lacks: backups with their chains, dumps, WAL, results; checked on the way', load: async () => (await import('@cairn/copy/command')).copyTool },
  'prom-export': { summary: 'Prometheus metrics of the repository: to a textfile, on /metrics, or stdout', load: async () => (await import('@cairn/prom-export/command')).promExportTool },
};
