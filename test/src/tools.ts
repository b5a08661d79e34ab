// Running the built cairn executables the way PostgreSQL and operators do:
// as the pg user, with an environment we control.

import { join } from 'node:path';
import { binPath, repoRoot } from '@cairn/testkit/paths';
import { runAsPg, type RunResult } from '@cairn/testkit/run-as';

export interface ToolRun extends RunResult {
  /** stderr lines, without the trailing empty one. */
  lines: string[];
}

/**
 * How wal-push and wal-get are started: 'bin' is what PATH and PostgreSQL get
 * (the compiled fast path, bin/cairn-<tool>), 'sh' its bash wrapper
 * (bin/cairn-<tool>.sh: the fallback, and the fast path where no C compiler
 * built the program); suites about the fast path run both.
 */
export type Via = 'bin' | 'sh';
export const VIAS: readonly Via[] = ['bin', 'sh'];

function toolPath(tool: string, via: Via): string {
  if (via === 'bin') return binPath(tool);
  if (tool !== 'wal-push' && tool !== 'wal-get') throw new Error(`${tool} has no bash fast path`);
  return join(repoRoot(), 'tools', tool, 'bin', `cairn-${tool}.sh`);
}

export async function runCairn(tool: string, args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number; via?: Via } = {}): Promise<ToolRun> {
  const { via = 'bin', ...rest } = opts;
  const r = await runAsPg(toolPath(tool, via), args, { ...rest, allowFail: true, timeoutMs: opts.timeoutMs ?? 120_000 });
  return { ...r, lines: r.stderr.split('\n').filter((l) => l !== '') };
}

/** A shell command line (archive_command / restore_command) for a tool. */
export function commandLine(tool: string, args: string, via: Via = 'bin'): string {
  return `${toolPath(tool, via)} ${args}`;
}
