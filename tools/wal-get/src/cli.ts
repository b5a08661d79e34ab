// Bin entry of cairn-wal-get. Runs once per WAL segment: cache compiled code
// across runs and load only what this tool needs.
import { enableCompileCache } from 'node:module';
import { tmpdir } from 'node:os';

const { privateCompileCacheDir } = await import('@cairn/core/spool/compile-cache');
const cacheDir = privateCompileCacheDir(tmpdir());
if (cacheDir) enableCompileCache?.(cacheDir);
const { runToolMain } = await import('@cairn/core/cli/main');
const { walGetTool } = await import('./command.js');
await runToolMain(walGetTool);
