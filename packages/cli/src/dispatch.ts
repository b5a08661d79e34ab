// `cairn <tool> [args]`: runs cairn-<tool> in this process.

import { EXIT } from '@cairn/core/cli/errors';
import type { RunIO, ToolDef } from '@cairn/core/cli/run';
import { CAIRN_VERSION } from '@cairn/core/version';
import { TOOLS } from './tools.js';

function usage(): string {
  const names = Object.keys(TOOLS);
  const width = Math.max(...names.map((n) => n.length));
  return [
    `cairn ${CAIRN_VERSION} — back up PostgreSQL and bring it back to any point in time`,
    '',
    'usage: cairn <tool> [options] [arguments]   (the same as cairn-<tool>)',
    '',
    'tools:',
    ...names.map((n) => `  ${n.padEnd(width)}  ${TOOLS[n]!.summary}`),
    '',
    'cairn <tool> --help shows the tool\'s options.',
  ].join('\n') + '\n';
}

/** Runs the dispatcher's own options; returns the tool to run otherwise. */
export async function dispatch(io: RunIO): Promise<number | { tool: ToolDef; argv: string[] }> {
  const [first, ...rest] = io.argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    (first === undefined ? io.stderr : io.stdout).write(usage());
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (first === '--version' || first === '-V') {
    io.stdout.write(`cairn ${CAIRN_VERSION}\n`);
    return EXIT.OK;
  }
  const tool = TOOLS[first];
  if (!tool) {
    io.stderr.write(`cairn: error: unknown tool "${first}"; use one of ${Object.keys(TOOLS).join(', ')} (see cairn --help)\n`);
    return EXIT.USAGE;
  }
  return { tool: await tool.load(), argv: rest };
}
