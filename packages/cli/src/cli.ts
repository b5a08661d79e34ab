// Bin entry of the `cairn` dispatcher.
import { enableCompileCache } from 'node:module';
import { tmpdir } from 'node:os';

const { privateCompileCacheDir } = await import('@cairn/core/spool/compile-cache');
const cacheDir = privateCompileCacheDir(tmpdir());
if (cacheDir) enableCompileCache?.(cacheDir);
const { dispatch } = await import('./dispatch.js');
const { runToolMain } = await import('@cairn/core/cli/main');
const outcome = await dispatch({
  argv: process.argv.slice(2),
  env: process.env,
  cwd: process.cwd(),
  stdout: process.stdout,
  stderr: process.stderr,
});
if (typeof outcome === 'number') process.exitCode = outcome;
else await runToolMain(outcome.tool, outcome.argv);
