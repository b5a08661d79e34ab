// Bin entry of cairn-drill.
import { enableCompileCache } from 'node:module';
import { tmpdir } from 'node:os';

enableCompileCache?.(`${tmpdir()}/cairn-compile-cache-${process.getuid?.() ?? 0}`);
const { runToolMain } = await import('@cairn/core/cli/run');
const { drillTool } = await import('./command.js');
await runToolMain(drillTool);
