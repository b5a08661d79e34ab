import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { defineTool, runTool } from './run.js';
import { CairnError, EXIT } from './errors.js';

function capture() {
  const s = new PassThrough();
  let text = '';
  s.on('data', (c: Buffer) => (text += c.toString()));
  return { stream: s, text: () => text };
}

const tool = defineTool({
  name: 'demo',
  description: 'a demo',
  positionals: [{ name: 'a', description: 'first', required: true }, { name: 'b', description: 'second', required: false }],
  settings: [{ name: 'count', type: 'integer', description: 'how many', default: 1 }],
  async run(ctx) {
    if (ctx.positionals[0] === 'fail') throw new CairnError('CHECKSUM_MISMATCH', 'object "x" fails its checksum', { hint: 'run cairn-verify' });
    if (ctx.positionals[0] === 'bug') throw new TypeError('boom');
    ctx.stdout.write(`count=${String(ctx.settings['count'])}\n`);
    return EXIT.OK;
  },
});

async function run(argv: string[]) {
  const out = capture();
  const err = capture();
  const code = await runTool(tool, { argv, env: {}, cwd: '/', stdout: out.stream, stderr: err.stream });
  return { code, out: out.text(), err: err.text() };
}

test('runs with flags and positionals', async () => {
  const r = await run(['x', '--count', '3']);
  assert.equal(r.code, 0);
  assert.equal(r.out, 'count=3\n');
  assert.equal(r.err, '');
});

test('unknown flag is a usage error on one line', async () => {
  const r = await run(['x', '--cuont', '3']);
  assert.equal(r.code, 2);
  assert.match(r.err, /^cairn-demo: error: unknown option '--cuont'; see cairn-demo --help\n$/);
});

test('missing and extra positionals are usage errors', async () => {
  let r = await run([]);
  assert.equal(r.code, 2);
  assert.match(r.err, /missing argument <a>/);
  r = await run(['1', '2', '3']);
  assert.equal(r.code, 2);
  assert.match(r.err, /unexpected argument "3"/);
});

test('errors map to their exit status; bugs to 70', async () => {
  let r = await run(['fail']);
  assert.equal(r.code, 4);
  assert.equal(r.err, 'cairn-demo: error: object "x" fails its checksum; run cairn-verify\n');
  r = await run(['bug']);
  assert.equal(r.code, 70);
  assert.match(r.err, /internal error: boom/);
});

test('--help and --version go to stdout with status 0', async () => {
  let r = await run(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.out, /usage: cairn-demo \[options\] <a> \[b\]/);
  assert.match(r.out, /--count N|--count VALUE/);
  r = await run(['--version']);
  assert.equal(r.code, 0);
  assert.match(r.out, /^cairn-demo \d+\.\d+\.\d+\n$/);
});

test('the bins refuse memory:// repositories; in-process callers (unit tests) may use them', async () => {
  const memTool = defineTool({ name: 'mem', description: '', positionals: [], settings: [], async run() { return EXIT.OK; } });
  const go = async (refuseTestRepositories: boolean) => {
    const err = capture();
    const code = await runTool(memTool, { argv: ['--repo', 'memory://x'], env: {}, cwd: '/', stdout: capture().stream, stderr: err.stream, refuseTestRepositories });
    return { code, err: err.text() };
  };
  const bin = await go(true);
  assert.equal(bin.code, 3);
  assert.match(bin.err, /^cairn-mem: error: invalid repository URL "memory:\/\/x": memory:\/\/ is a test double that keeps nothing; /);
  assert.equal((await go(false)).code, 0);
});

test('a negative number after a flag is its value; a flag without a value says so on one line', async () => {
  let r = await run(['x', '--count', '-3']);
  assert.equal(r.code, 2);
  assert.equal(r.err, 'cairn-demo: error: invalid --count -3; use 0 or more\n');
  r = await run(['x', '--count']);
  assert.equal(r.code, 2);
  assert.match(r.err, /^cairn-demo: error: option --count needs a value; [^\n]*\n$/);
});

test('messages are escaped and redacted on their way out', async () => {
  const leaky = defineTool({ name: 'leaky', description: '', positionals: [], settings: [], async run() {
    throw new CairnError('STORAGE_UNAVAILABLE', 'repository "s3://b/p?region=r&sig=hunter2" said\nfake line', { hint: 'see\x1b[2J' });
  } });
  const err = capture();
  const code = await runTool(leaky, { argv: [], env: {}, cwd: '/', stdout: capture().stream, stderr: err.stream });
  assert.equal(code, 3);
  assert.equal(err.text(), 'cairn-leaky: error: repository "s3://b/p?region=r&sig=***" said\\x0afake line; see\\x1b[2J\n');
});

test('ctx.settings is typed from the declarations (this file does not compile otherwise)', async () => {
  const typed = defineTool({
    name: 'typed',
    description: 'types',
    positionals: [],
    settings: [
      { name: 'jobs', type: 'integer', description: '', min: 1, max: 8 },
      { name: 'mode', type: 'string', description: '', default: 'fast', choices: ['fast', 'spread'] },
      { name: 'item', type: 'list', description: '' },
      { name: 'dry', type: 'boolean', description: '', default: false },
    ],
    async run(ctx) {
      const s = ctx.settings;
      // Each line fails to compile if the value's type is unknown or wider
      // than declared; the @ts-expect-error lines fail if it is any.
      const jobs: number | undefined = s.jobs;
      const mode: 'fast' | 'spread' = s.mode;
      const items: string[] = s.item;
      const dry: boolean = s.dry;
      const cluster: string = s.cluster;
      // @ts-expect-error a setting without a default may be unset
      const sure: number = s.jobs;
      // @ts-expect-error the choices are the type
      const other: 'slow' = s.mode;
      ctx.stdout.write(JSON.stringify({ jobs, mode, items, dry, cluster, sure, other }) + '\n');
      return EXIT.OK;
    },
  });
  const out = capture();
  const code = await runTool(typed, { argv: ['--mode', 'spread'], env: {}, cwd: '/', stdout: out.stream, stderr: capture().stream });
  assert.equal(code, 0);
  assert.deepEqual(JSON.parse(out.text()), { mode: 'spread', items: [], dry: false, cluster: 'main', other: 'spread' });
});

test('no command.ts casts a setting: the declarations type them', () => {
  // From packages/core/dist/cli/ up to the repository root.
  const root = fileURLToPath(new URL('../../../../', import.meta.url));
  const tools = readdirSync(`${root}tools`);
  assert.ok(tools.length >= 11, `found the tools in ${root}tools`);
  for (const t of tools) {
    const text = readFileSync(`${root}tools/${t}/src/command.ts`, 'utf8');
    const casts = text.split('\n').filter((l) => /\bs(?:ettings)?(?:\[|\.\w|\?\.)[^;]*\bas (?:number|string|boolean)\b|String\(s(?:ettings)?[[.]/.test(l));
    assert.deepEqual(casts, [], `tools/${t}/src/command.ts`);
  }
});
