// The tools the `cairn` dispatcher knows, loaded only when called.

import type { ToolDef } from '@cairn/core/cli/run';

export const TOOLS: Record<string, { summary: string; load: () => Promise<ToolDef> }> = {
  'wal-push': { summary: 'archive a WAL file (archive_command)', load: async () => (await import('@cairn/wal-push/command')).walPushTool },
  'wal-get': { summary: 'fetch a WAL file (restore_command)', load: async () => (await import('@cairn/wal-get/command')).walGetTool },
};
