// Running the built cairn executables the way PostgreSQL and operators do:
// as the pg user, with an environment we control.

import { binPath } from '@cairn/testkit/paths';
import { runAsPg, type RunResult } from '@cairn/testkit/run-as';

export interface ToolRun extends RunResult {
  /** stderr lines, without the trailing empty one. */
  lines: string[];
}

export async function runCairn(tool: string, args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {}): Promise<ToolRun> {
  const r = await runAsPg(binPath(tool), args, { ...opts, allowFail: true, timeoutMs: opts.timeoutMs ?? 120_000 });
  return { ...r, lines: r.stderr.split('\n').filter((l) => l !== '') };
}

/** A shell command line (archive_command / restore_command) for a tool. */
export function commandLine(tool: string, args: string): string {
  return `${binPath(tool)} ${args}`;
}
