// Bin entry of cairn-copy.
import { enableCompileCache } from 'node:module';
import { tmpdir } from 'node:os';

const { privateCompileCacheDir } = await import('@cairn/core/spool/compile-cache');
const cacheDir = privateCompileCacheDir(tmpdir());
if (cacheDir) enableCompileCache?.(cacheDir);
const { runToolMain } = await import('@cairn/core/cli/main');
const { copyTool } = await import('./command.js');
await runToolMain(copyTool);
