// cron/: the crontab and the systemd units operators install. Every schedule
// parses, every unit passes `systemd-analyze verify`, and every cairn command
// line they hold is accepted by the tool it calls (its own flag parser), so a
// renamed flag fails here and not at 02:00.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkInvocation, firstSimpleCommand, invocationProblem, toolOfExecutable } from './tool-args.js';
import { cronFieldProblem, parseCronD, parseUnit, type UnitFile } from './ops-parsers.js';
import { parseConfigFile } from '@cairn/core/config/config-file';

const root = new URL('../../', import.meta.url).pathname;
const cronDir = join(root, 'cron');
const unitDir = join(cronDir, 'systemd');
// Where the .deb (/usr/bin) and install.sh (/usr/local/bin) put cairn-*: the
// units name the commands plainly (systemd's fixed search path holds both)
// and the crontab's PATH holds both.
const INSTALLED_DIRS = ['/usr/local/bin', '/usr/bin'];

// ---- crontab ----

test('crontab: the parser itself rejects bad fields (so the checks below can fail)', () => {
  assert.equal(cronFieldProblem('0', 0), undefined);
  assert.equal(cronFieldProblem('*/15', 0), undefined);
  assert.equal(cronFieldProblem('8,14,20', 1), undefined);
  assert.equal(cronFieldProblem('1-5', 4), undefined);
  assert.equal(cronFieldProblem('sun', 4), undefined);
  assert.equal(cronFieldProblem('jan-mar', 3), undefined);
  assert.match(cronFieldProblem('60', 0)!, /minute "60": "60" is outside 0-59/);
  assert.match(cronFieldProblem('24', 1)!, /hour/);
  assert.match(cronFieldProblem('0', 2)!, /day of month/);
  assert.match(cronFieldProblem('5-1', 1)!, /runs backwards/);
  assert.match(cronFieldProblem('5/2', 1)!, /a step needs/);
  assert.match(cronFieldProblem('sunday', 4)!, /outside/);
  assert.throws(() => parseCronD('0 2 * * postgres cairn-dump --all\n'), /line 1: day of week "postgres"/);
  assert.throws(() => parseCronD('0 2 * * * postgres date +%F\n'), /unescaped %/);
});

test('crontab: every line parses and runs as postgres with CAIRN_* settings set at the top', () => {
  const { env, jobs } = parseCronD(readFileSync(join(cronDir, 'crontab'), 'utf8'));
  assert.ok(env.get('CAIRN_CONFIG'), 'CAIRN_CONFIG is set');
  const path = (env.get('PATH') ?? '').split(':');
  for (const dir of INSTALLED_DIRS) assert.ok(path.includes(dir), `PATH holds ${dir}, where cairn-* is installed`);
  assert.ok(!path.some((d) => d.includes('node_modules')), 'PATH names no checkout (node_modules)');
  assert.ok(jobs.length >= 8, `8 jobs or more, found ${jobs.length}`);
  for (const j of jobs) assert.equal(j.user, 'postgres', `line ${j.line} runs as postgres`);
});

function cronInvocations(): { line: number; schedule: string; tool: string; argv: string[] }[] {
  const { jobs } = parseCronD(readFileSync(join(cronDir, 'crontab'), 'utf8'));
  return jobs.map((j) => {
    const [exe, ...argv] = firstSimpleCommand(j.command);
    const tool = toolOfExecutable(exe ?? '');
    assert.ok(tool, `crontab line ${j.line} calls a cairn tool: ${j.command}`);
    return { line: j.line, schedule: j.schedule.join(' '), tool, argv };
  });
}

test('crontab: the schedule of the issue (full daily 02:00, incr hourly, diff every 6 h, dumps nightly, expire daily, verify weekly, drill monthly, prom-export every minute)', () => {
  const jobs = cronInvocations();
  const find = (tool: string, type?: string) => {
    const found = jobs.filter((j) => j.tool === tool && (type === undefined || j.argv.join(' ').includes(`--type ${type}`)));
    assert.equal(found.length, 1, `one ${tool} ${type ?? ''} job`);
    return found[0]!.schedule;
  };
  assert.equal(find('basebackup', 'full'), '0 2 * * *');
  assert.match(find('basebackup', 'incr'), /^\d+ \* \* \* \*$/);
  assert.equal(find('basebackup', 'diff').split(' ')[1]!.split(',').length, 3, 'three diffs a day besides the full: every 6 h');
  assert.match(find('dump'), /^\d+ \d+ \* \* \*$/);
  assert.match(find('expire'), /^\d+ \d+ \* \* \*$/);
  assert.match(find('verify'), /^\d+ \d+ \* \* (sun|mon|tue|wed|thu|fri|sat|[0-7])$/);
  assert.match(find('drill'), /^\d+ \d+ \d+ \* \*$/);
  assert.equal(find('prom-export'), '* * * * *');
  // The lease lets one basebackup/dump/expire run at a time: the ones that
  // can meet another must wait for it rather than exit 5.
  for (const j of jobs.filter((x) => ['basebackup', 'dump', 'expire'].includes(x.tool))) {
    assert.ok(j.argv.includes('--lock-wait'), `crontab line ${j.line} (${j.tool}) waits for the lease`);
  }
});

test('crontab: every cairn command line is accepted by its tool', async () => {
  const problems: string[] = [];
  for (const j of cronInvocations()) {
    const p = await invocationProblem(j.tool, j.argv);
    if (p) problems.push(`crontab line ${j.line}: ${p}`);
  }
  assert.deepEqual(problems, []);
});

// deploy/compose/crontab: cron/crontab's schedule for a server in another
// container (schedule.sh installs it in the cairn service).
test('compose crontab: the schedule of cron/crontab (but prom-export, which the service serves), backups with --remote, every line accepted by its tool', async () => {
  const compose = parseCronD(readFileSync(join(cronDir, '..', 'deploy', 'compose', 'crontab'), 'utf8'));
  const host = cronInvocations().filter((j) => j.tool !== 'prom-export');
  const jobs = compose.jobs.map((j) => {
    assert.equal(j.user, 'postgres', `line ${j.line} runs as postgres`);
    const [exe, ...argv] = firstSimpleCommand(j.command);
    const tool = toolOfExecutable(exe ?? '');
    assert.ok(tool, `line ${j.line} calls a cairn tool: ${j.command}`);
    return { line: j.line, schedule: j.schedule.join(' '), tool, argv };
  });
  assert.deepEqual(jobs.map((j) => `${j.schedule} ${j.tool}`), host.map((j) => `${j.schedule} ${j.tool}`));
  jobs.forEach((j, k) => {
    const expected = j.tool === 'basebackup' ? ['--remote', ...host[k]!.argv] : host[k]!.argv;
    assert.deepEqual(j.argv, expected, `line ${j.line}: the host crontab's flags${j.tool === 'basebackup' ? ' with --remote' : ''}`);
  });
  const problems: string[] = [];
  for (const j of jobs) {
    const p = await invocationProblem(j.tool, j.argv);
    if (p) problems.push(`line ${j.line}: ${p}`);
  }
  assert.deepEqual(problems, []);
});

test('the flag check rejects what the tools reject: unknown flags, bad values, missing values', async () => {
  await assert.rejects(checkInvocation('basebackup', ['--typ', 'full']), /unknown option '--typ'/);
  await assert.rejects(checkInvocation('basebackup', ['--type', 'ful']), /invalid --type "ful"/);
  await assert.rejects(checkInvocation('basebackup', ['--lock-wait', 'soon']), /"soon" is not a whole number for --lock-wait/);
  await assert.rejects(checkInvocation('expire', ['--keep-within', '14']), /invalid --keep-within "14": no unit/);
  await assert.rejects(checkInvocation('expire', ['--keep-full', 'two']), /--keep-full "two" is not a whole number/);
  await assert.rejects(checkInvocation('dump', ['--all', '--compress', 'lz4']), /invalid compression "lz4"/);
  await assert.rejects(checkInvocation('dump', ['--dbname']), /option --dbname needs a value/);
  await assert.rejects(checkInvocation('verify', ['extra']), /unexpected argument "extra"/);
  await assert.rejects(checkInvocation('nope', []), /"cairn-nope" is not a cairn tool/);
  await checkInvocation('dump', ['--dbname', '$DB', '--repo', '${REPO}']);
});

// ---- systemd ----

const one = (u: UnitFile, section: string, key: string): string | undefined => u.get(section)?.get(key)?.at(-1);

const unitNames = readdirSync(unitDir).filter((n) => n.endsWith('.service') || n.endsWith('.timer')).sort();
const units = new Map(unitNames.map((n) => [n, parseUnit(readFileSync(join(unitDir, n), 'utf8'), n)]));
const JOBS = ['cairn-backup-full', 'cairn-backup-incr', 'cairn-backup-diff', 'cairn-dump', 'cairn-expire', 'cairn-verify', 'cairn-drill', 'cairn-prom-export'];

test('systemd: one oneshot service and one timer per job, run as postgres, with the failure hook and the environment file', () => {
  assert.deepEqual(unitNames, [...JOBS.flatMap((j) => [`${j}.service`, `${j}.timer`]), 'cairn-notify@.service'].sort());
  for (const job of JOBS) {
    const s = units.get(`${job}.service`)!;
    assert.equal(one(s, 'Service', 'Type'), 'oneshot', `${job}: Type`);
    assert.equal(one(s, 'Service', 'User'), 'postgres', `${job}: User`);
    assert.match(one(s, 'Service', 'EnvironmentFile') ?? '', /^-?\/etc\/cairn\/cairn\.env$/, `${job}: EnvironmentFile`);
    const hook = one(s, 'Unit', 'OnFailure');
    assert.equal(hook, 'cairn-notify@%n.service', `${job}: OnFailure`);
    assert.ok(units.has(hook!.replace('%n', '')), 'the OnFailure template unit is shipped');
    assert.ok(one(s, 'Service', 'TimeoutStartSec'), `${job}: a hung run is stopped`);
    const t = units.get(`${job}.timer`)!;
    assert.ok(one(t, 'Timer', 'OnCalendar'), `${job}: OnCalendar`);
    assert.ok(one(t, 'Timer', 'RandomizedDelaySec'), `${job}: RandomizedDelaySec`);
    if (job !== 'cairn-prom-export') assert.equal(one(t, 'Timer', 'Persistent'), 'true', `${job}: Persistent`);
    assert.equal(one(t, 'Install', 'WantedBy'), 'timers.target', `${job}: WantedBy`);
  }
});

function execStart(job: string): { exe: string; tool: string; argv: string[] } {
  const line = one(units.get(`${job}.service`)!, 'Service', 'ExecStart')!;
  const [exe, ...argv] = firstSimpleCommand(line);
  assert.match(exe!, /^cairn-[a-z-]+$/, `${job}: ExecStart names the command plainly, found on systemd's search path (${INSTALLED_DIRS.join(', ')})`);
  const tool = toolOfExecutable(exe!);
  assert.ok(tool, `${job}: ExecStart calls a cairn tool`);
  return { exe: exe!, tool, argv };
}

test('systemd: every ExecStart is accepted by its tool and runs the same command line as the crontab', async () => {
  const cron = cronInvocations().map((j) => `${j.tool} ${j.argv.join(' ')}`).sort();
  const problems: string[] = [];
  const lines: string[] = [];
  for (const job of JOBS) {
    const { tool, argv } = execStart(job);
    lines.push(`${tool} ${argv.join(' ')}`);
    const p = await invocationProblem(tool, argv);
    if (p) problems.push(`${job}.service: ${p}`);
  }
  assert.deepEqual(problems, []);
  assert.deepEqual(lines.sort(), cron, 'cron and systemd run the same jobs');
});

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const haveAnalyze = analyze.status === 0;

test('systemd: every OnCalendar is a valid calendar expression (systemd-analyze calendar)', { skip: haveAnalyze ? false : 'systemd-analyze is not installed' }, () => {
  for (const job of JOBS) {
    const spec = one(units.get(`${job}.timer`)!, 'Timer', 'OnCalendar')!;
    const r = spawnSync('systemd-analyze', ['calendar', spec], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${job}.timer OnCalendar=${spec}: ${r.stderr}`);
    assert.match(r.stdout, /Next elapse:/);
  }
  // And it would notice a bad one.
  assert.notEqual(spawnSync('systemd-analyze', ['calendar', '*-*-* 25:00:00'], { encoding: 'utf8' }).status, 0);
});

test('systemd: systemd-analyze verify passes (commands pointed at this checkout\'s bins)', { skip: haveAnalyze ? false : 'systemd-analyze is not installed' }, (t) => {
  // verify checks that ExecStart's program exists: point the copies at the
  // bins built in this checkout (the package installs the same wrappers).
  const dir = mkdtempSync(join(tmpdir(), 'cairn-units-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const here = join(root, 'node_modules/.bin/');
  for (const n of unitNames) {
    writeFileSync(join(dir, n), readFileSync(join(unitDir, n), 'utf8').replaceAll(/^ExecStart=cairn-/gm, `ExecStart=${here}cairn-`));
  }
  for (const job of JOBS) assert.ok(existsSync(here + execStart(job).exe), `${job}: its bin exists after the build`);
  const r = spawnSync('systemd-analyze', ['verify', ...unitNames.map((n) => join(dir, n))], { encoding: 'utf8' });
  // verify exits 0 on unknown keys and only warns: any output is a failure.
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', 'no warnings from systemd-analyze verify');

  // The same run notices a misspelt key (so this test can fail).
  cpSync(join(dir, 'cairn-dump.service'), join(dir, 'bad.service'));
  writeFileSync(join(dir, 'bad.service'), readFileSync(join(dir, 'bad.service'), 'utf8').replace('Type=oneshot', 'Typ=oneshot'));
  const bad = spawnSync('systemd-analyze', ['verify', join(dir, 'bad.service')], { encoding: 'utf8' });
  assert.match(bad.stderr, /Unknown key 'Typ'/);
});

test('systemd: the unit parser rejects what systemd would not read', () => {
  assert.throws(() => parseUnit('Type=oneshot\n', 'x.service'), /line 1: expected Key=Value inside a section/);
  assert.throws(() => parseUnit('[Timer]\nOnCalendar=daily\n', 'x.service'), /unexpected section \[Timer\]/);
  assert.throws(() => parseUnit('[Service]\nType oneshot\n', 'x.service'), /line 2/);
});

test('cron/cairn.env.example holds only KEY=value lines and no password', () => {
  for (const [i, raw] of readFileSync(join(cronDir, 'cairn.env.example'), 'utf8').split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    assert.match(line, /^[A-Z_][A-Z0-9_]*=\S*$/, `line ${i + 1}`);
    assert.doesNotMatch(line, /PASSWORD|SECRET|TOKEN|ACCESS_KEY/, `line ${i + 1} holds no credential`);
  }
});

test('cron/cairn.conf.example (the .deb\'s /etc/cairn/cairn.conf) parses, and so does every key it shows commented out', () => {
  const text = readFileSync(join(cronDir, 'cairn.conf.example'), 'utf8');
  const active = parseConfigFile(text, 'cairn.conf.example');
  assert.deepEqual([...active.values()].flatMap((m) => [...m.keys()]), [], 'as shipped it sets nothing');
  // The examples are `#key = value` lines (no space after #): uncommented,
  // each must be a key some tool knows.
  const shown = text.replace(/^#(?=[a-z-]+ = )/gm, '');
  const keys = [...parseConfigFile(shown, 'cairn.conf.example').values()].flatMap((m) => [...m.keys()]);
  assert.ok(keys.includes('repo') && keys.includes('pgdata'), `the example shows repo and pgdata: ${keys.join(', ')}`);
  assert.throws(() => parseConfigFile('[global]\nrepos = /x\n', 'bad.conf'), /unknown key "repos"/);
});
