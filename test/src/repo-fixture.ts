// Repositories for end-to-end tests: a file repository or a bucket on the
// local S3 server, with or without an encryption key, and the environment the
// tools need to use it.

import { writeFile, chmod } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { S3Client, DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { makeTempDir, chownToPgUser } from '@cairn/testkit/tmp';
import { startS3Server, s3TestEnv } from '@cairn/testkit/s3-server';
import { readdir, readFile, rm, stat } from 'node:fs/promises';

export interface RepoFixture {
  kind: 'fs' | 's3';
  encrypted: boolean;
  url: string;
  keyFile?: string;
  /** Environment for cairn tools (CAIRN_REPO, key file, AWS_* for S3, spool). */
  env: Record<string, string>;
  /** Every stored object: key → raw stored bytes. */
  objects(prefix?: string): Promise<Map<string, Buffer>>;
  /** Raw stored object keys. */
  keys(prefix?: string): Promise<string[]>;
  /** Overwrite a stored object's bytes behind cairn's back (corruption tests). */
  tamper(key: string, bytes: Buffer): Promise<void>;
  /** Delete a stored object behind cairn's back (a repository that lost it). */
  remove(key: string): Promise<void>;
  endpoint?: string;
}

let s3: Awaited<ReturnType<typeof startS3Server>> | undefined;
let bucketCount = 0;

async function sharedS3() {
  s3 ??= await startS3Server({ buckets: [] });
  return s3;
}

function s3Client(endpoint: string): S3Client {
  const env = s3TestEnv();
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: env['AWS_ACCESS_KEY_ID']!, secretAccessKey: env['AWS_SECRET_ACCESS_KEY']! },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export async function makeKeyFile(dir?: string): Promise<string> {
  const d = dir ?? (await makeTempDir('key'));
  const path = join(d, 'cairn.key');
  await writeFile(path, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
  await chownToPgUser(path);
  await chmod(path, 0o600);
  return path;
}

export async function makeRepo(kind: 'fs' | 's3', encrypted: boolean, opts: { endpointOverride?: string } = {}): Promise<RepoFixture> {
  const spool = await makeTempDir('spool');
  const keyFile = encrypted ? await makeKeyFile() : undefined;
  const baseEnv: Record<string, string> = { CAIRN_SPOOL_DIR: spool, ...(keyFile ? { CAIRN_ENCRYPTION_KEY_FILE: keyFile } : {}) };
  if (kind === 'fs') {
    const dir = await makeTempDir('repo');
    const walk = async (d: string, rel: string, out: string[]) => {
      for (const n of await readdir(d).catch(() => [] as string[])) {
        const p = join(d, n);
        const r = rel ? `${rel}/${n}` : n;
        // A lock or temp entry removed while the walk reads the tree is gone, not an error.
        const st = await stat(p).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return undefined;
          throw err;
        });
        if (st === undefined) continue;
        if (st.isDirectory()) await walk(p, r, out);
        else out.push(r);
      }
      return out;
    };
    const keys = async (prefix = '') => (await walk(dir, '', [])).filter((k) => k.startsWith(prefix)).sort();
    return {
      kind, encrypted, url: dir, ...(keyFile ? { keyFile } : {}),
      env: { ...baseEnv, CAIRN_REPO: dir },
      keys,
      async objects(prefix = '') {
        const m = new Map<string, Buffer>();
        for (const k of await keys(prefix)) {
          const body = await readFile(join(dir, k)).catch((err: NodeJS.ErrnoException) => {
            if (err.code === 'ENOENT') return undefined; // removed since the walk (a lock, a temp file)
            throw err;
          });
          if (body !== undefined) m.set(k, body);
        }
        return m;
      },
      async tamper(key, bytes) {
        await writeFile(join(dir, key), bytes);
      },
      async remove(key) {
        await rm(join(dir, key));
      },
    };
  }
  const server = await sharedS3();
  const bucket = `cairn-test-${process.pid}-${++bucketCount}`;
  const client = s3Client(server.endpoint);
  const { CreateBucketCommand, PutObjectCommand } = await import('@aws-sdk/client-s3');
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const endpoint = opts.endpointOverride ?? server.endpoint;
  const url = `s3://${bucket}/pg?endpoint=${encodeURIComponent(endpoint)}&region=us-east-1&force-path-style=true`;
  const keys = async (prefix = '') => {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `pg/${prefix}`, ContinuationToken: token }));
      for (const o of r.Contents ?? []) out.push(o.Key!.slice('pg/'.length));
      token = r.NextContinuationToken;
    } while (token);
    return out.sort();
  };
  return {
    kind, encrypted, url, endpoint: server.endpoint, ...(keyFile ? { keyFile } : {}),
    env: { ...baseEnv, ...s3TestEnv(), CAIRN_REPO: url },
    keys,
    async objects(prefix = '') {
      const m = new Map<string, Buffer>();
      for (const k of await keys(prefix)) {
        const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `pg/${k}` }));
        m.set(k, Buffer.from(await r.Body!.transformToByteArray()));
      }
      return m;
    },
    async tamper(key, bytes) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `pg/${key}`, Body: bytes }));
    },
    async remove(key) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `pg/${key}` }));
    },
  };
}
