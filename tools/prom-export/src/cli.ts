// Bin entry of cairn-prom-export.
import { enableCompileCache } from 'node:module';
import { tmpdir } from 'node:os';

enableCompileCache?.(`${tmpdir()}/cairn-compile-cache-${process.getuid?.() ?? 0}`);
const { runToolMain } = await import('@cairn/core/cli/run');
const { promExportTool } = await import('./command.js');
await runToolMain(promExportTool);
