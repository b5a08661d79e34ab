// The bins' entry: binds a tool to the process (argv, environment, standard
// streams, SIGTERM/SIGINT, the exit status). The one core module that touches
// `process`; everything below works on the ToolContext (docs/style.md).

import { CairnError, EXIT } from './errors.js';
import { runTool, type ToolDef } from './run.js';

/** The bin's entry: runs the tool on the process and sets its exit status. */
export async function runToolMain(def: ToolDef, argv: string[] = process.argv.slice(2)): Promise<void> {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    // PostgreSQL sends SIGTERM at fast shutdown; stop work and exit non-zero,
    // with the tool's own status for errors (wal-push must stay below 126).
    const err = new CairnError('INTERNAL', `interrupted by ${sig}`);
    ac.abort(err);
    setTimeout(() => process.exit(def.exitFor ? def.exitFor(err, undefined, process.env) : EXIT.INTERNAL), def.signalGraceMs ?? 2000).unref();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const code = await runTool(def, {
    argv,
    env: process.env,
    cwd: process.cwd(),
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    signal: ac.signal,
    refuseTestRepositories: true,
  });
  process.exitCode = code;
}
