// cairn-verify's dump checks: read back every object of a dump against its
// recorded SHA-256, and have pg_restore --list read its table of contents
// (custom format as it streams, directory format from its toc.dat).

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CairnError } from '@cairn/core/cli/errors';
import { createCountStage, type EncryptionKey } from '@cairn/core/codec/index';
import { GLOBALS_DIR, databaseFromDir, type DumpManifest, type DumpObject } from '@cairn/core/dump/manifest';
import { dumpReadStages } from '@cairn/core/dump/objects';
import { dumpReaderMajor, findPgProgram } from '@cairn/core/pg/binaries';
import { programErrorLine, startProgram, stdinSink } from '@cairn/core/util/program';
import type { StorageDriver } from '@cairn/core/storage/driver';
import { forEachLimit } from '@cairn/core/util/limit';
import { quote } from '@cairn/core/wal/quote';
import type { VerifyProblem } from '@cairn/core/verify/result-format';
import { discard, findingOf } from './read-check.js';
import type { Counters, VerifyContext, VerifyOptions } from './verify.js';

export function dumpName(d: { dir: string; id: string }): string {
  return `${d.dir === GLOBALS_DIR ? GLOBALS_DIR : (databaseFromDir(d.dir) ?? d.dir)}/${d.id}`;
}

interface TocCheck {
  /** Feed the dump's plaintext here (custom format); ignores what pg_restore no longer reads. */
  sink: Writable;
  done: Promise<{ ok: boolean; message: string }>;
}

/**
 * Runs `pg_restore --list` on `dir` (directory format) or on stdin (custom
 * format, fed through `sink`). pg_restore reads only the header and TOC and
 * exits: what is left is drained so the object's hash still completes.
 */
function runTocCheck(bin: string, dir: string | undefined, env: NodeJS.ProcessEnv): TocCheck {
  const p = startProgram(bin, ['--list', ...(dir === undefined ? [] : [dir])], { env, stdin: dir === undefined ? 'pipe' : 'ignore' });
  const done = p.exited.then((e) => {
    if (e.error) {
      throw (e.error as NodeJS.ErrnoException).code === 'ENOENT'
        ? new CairnError('CONFIG_INVALID', `cannot run ${quote(bin)}: not found`, { hint: 'give the directory of pg_restore with --pg-bin / CAIRN_PG_BIN (it checks each dump\'s table of contents)' })
        : e.error;
    }
    return { ok: e.code === 0, message: e.code === 0 ? '' : programErrorLine(e.stderr, { program: 'pg_restore', fallback: `pg_restore exited ${e.code ?? e.signal}` }) };
  });
  if (dir !== undefined) return { sink: discard(), done };
  const sink = stdinSink(p, { afterClose: 'discard' });
  // A failed read must not leave pg_restore waiting on stdin.
  sink.once('close', () => {
    if (!sink.writableFinished) p.kill('SIGKILL');
  });
  return { sink, done };
}

/** Streams a dump object through its decoders and checks (core dump/objects) into `sink`; throws on a finding. */
async function checkDumpObject(driver: StorageDriver, o: DumpObject, key: EncryptionKey | undefined, sink: Writable, signal: AbortSignal): Promise<number> {
  const label = `dump object "${o.key}" in repository "${driver.url}"`;
  const count = createCountStage();
  // Nothing is held back: the consumer (pg_restore --list) commits nothing.
  await pipeline([await driver.read(o.key, signal), count.stage, ...dumpReadStages(o, key, label, 0), sink], { signal });
  return count.bytes();
}

export async function verifyDump(driver: StorageDriver, m: DumpManifest, key: EncryptionKey | undefined, opts: VerifyOptions, ctx: VerifyContext, n: Counters, problems: VerifyProblem[]): Promise<void> {
  const name = dumpName(m);
  // The globals dump is SQL text: no table of contents to read.
  const bin = m.dumpFormat === 'globals' ? '' : await pgRestoreFor(dumpReaderMajor(m), opts, ctx);
  let tocDir: string | undefined;
  let tocFailed = false;
  try {
    await forEachLimit(m.objects, opts.jobs, async (o) => {
      // Custom format: the one object goes through pg_restore as it is hashed.
      const toc = m.dumpFormat === 'custom' ? runTocCheck(bin, undefined, ctx.env) : undefined;
      // Directory format: toc.dat (small) is kept for pg_restore --list DIR.
      const parts: Buffer[] = [];
      const keep = m.dumpFormat === 'directory' && o.name === 'toc.dat';
      const sink = toc?.sink ?? (keep ? new Writable({ write(c: Buffer, _e, cb) { parts.push(c); cb(); } }) : discard());
      try {
        const stored = await checkDumpObject(driver, o, key, sink, ctx.signal);
        n.objects++;
        n.bytes += o.size;
        n.storedBytes += stored;
      } catch (err) {
        const finding = findingOf(err);
        if (finding === undefined) {
          await toc?.done.catch(() => {});
          throw err;
        }
        tocFailed = true;
        await toc?.done.catch(() => {});
        problems.push(finding === 'missing'
          ? { kind: 'object-missing', subject: name, key: o.key, message: `dump ${quote(name)}: object ${quote(o.key)} ("${o.name}") is missing`, hint: 'this dump cannot be restored: take a new one with cairn-dump' }
          : { kind: 'object-corrupt', subject: name, key: o.key, message: `dump ${quote(name)}: ${(err as Error).message}`, hint: 'this dump cannot be restored from this repository: take a new one with cairn-dump' });
        return;
      }
      if (toc) {
        const r = await toc.done;
        if (!r.ok) problems.push(tocProblem(name, o.key, r.message));
      }
      if (keep) {
        tocDir = await mkdtemp(join(tmpdir(), 'cairn-verify-'));
        await writeFile(join(tocDir, 'toc.dat'), Buffer.concat(parts), { mode: 0o600 });
      }
    }, ctx.signal);
    if (m.dumpFormat === 'directory' && !tocFailed) {
      if (tocDir === undefined) {
        problems.push(tocProblem(name, undefined, 'the manifest lists no toc.dat'));
      } else {
        const r = await runTocCheck(bin, tocDir, ctx.env).done;
        if (!r.ok) problems.push(tocProblem(name, m.objects.find((o) => o.name === 'toc.dat')?.key, r.message));
      }
    }
  } finally {
    if (tocDir !== undefined) await rm(tocDir, { recursive: true, force: true });
  }
}

/** pg_restore for dumps written by pg_dump `major` (dumpReaderMajor), looked up once per major and run. */
const pgRestoreCache = new WeakMap<VerifyOptions, Map<number, Promise<string>>>();
function pgRestoreFor(major: number, opts: VerifyOptions, ctx: VerifyContext): Promise<string> {
  let byMajor = pgRestoreCache.get(opts);
  if (!byMajor) pgRestoreCache.set(opts, (byMajor = new Map()));
  let found = byMajor.get(major);
  if (!found) {
    found = findPgProgram('pg_restore', major, { pgBin: opts.pgBin, env: ctx.env }).then((b) => b.path);
    byMajor.set(major, found);
  }
  return found;
}

function tocProblem(name: string, key: string | undefined, why: string): VerifyProblem {
  return {
    kind: 'dump-toc-invalid',
    subject: name,
    ...(key === undefined ? {} : { key }),
    message: `dump ${quote(name)}: pg_restore --list cannot read its table of contents: ${why}`,
    hint: 'this dump cannot be restored: take a new one with cairn-dump (and check the pg_dump version against --pg-bin)',
  };
}
