// The spool contract: every value the fast paths (the C program
// packages/core/native/spool-fast.c and its fallback, the bash wrappers
// tools/wal-push/bin/cairn-wal-push.sh and tools/wal-get/bin/cairn-wal-get.sh) share
// with the Node side (spool-dir.ts, push-spool.ts, get-spool.ts, the workers,
// wal-get's exit statuses). This file is their one source: Node imports the
// constants, and scripts/gen-spool-contract.mjs writes them (from the built
// dist/spool/contract.js) as plain bash assignments into a marked block of
// both scripts, which use only those variables, and as #defines into
// packages/core/native/spool-contract.h (docs/design.md §4 rule 12).
// Change a value here, build, run the generator: test/src/spool-contract.test.ts
// fails while a script's block is stale or a value appears there literally.

import { EXIT } from '../cli/errors.js';
import { DEFAULT_CONFIG_PATH } from '../config/settings.js';

/** PostgreSQL's WAL directory in the data directory; the default spool root lives in it (resolved: initdb -X makes it a link). */
export const WAL_DIR = 'pg_wal';
/** The default spool root's name inside pg_wal/ (pg_basebackup and cairn-basebackup copy no pg_wal contents; PostgreSQL only looks at WAL file names there). */
export const SPOOL_DIR_NAME = '.cairn-spool';
/** One directory per tool below the root, so push records and prefetched segments never share a directory. */
export const SPOOL_KINDS = ['push', 'get'] as const;
export type SpoolKind = (typeof SPOOL_KINDS)[number];
/** The file in each context directory holding the context it was made for; the wrappers compare it byte for byte. */
export const CONTEXT_FILE = 'context';

/**
 * The context file's lines (spool-dir.ts spoolContext builds them, the
 * wrappers build the same bytes). The header's version changes whenever the
 * format does, so an old directory never matches a new wrapper.
 */
export const CONTEXT_HEADER = 'cairn spool context 1';
/** Prefixes of the context's lines: the physical cwd, each argument but the positionals, each CAIRN_* variable, the config path. */
export const CONTEXT_CWD = 'cwd=';
export const CONTEXT_ARG = 'arg=';
export const CONTEXT_ENV = 'env=';
export const CONTEXT_CONFIG = 'config=';
/** The line after config=: the config file's bytes follow "present"; "absent" when it cannot be read. */
export const CONTEXT_PRESENT = 'present';
export const CONTEXT_ABSENT = 'absent';
/** The config file read when neither --config nor CAIRN_CONFIG names one (its path and content are in the context). */
export const CONTEXT_DEFAULT_CONFIG = DEFAULT_CONFIG_PATH;

/** Set by cairn-wal-get's wrapper for Node: "not found" then exits WRAPPED_NOT_FOUND (see command.ts). */
export const WRAPPED_ENV = 'CAIRN_WRAPPED';
export const WRAPPED_VALUE = '1';
/** The push-ahead worker's job (JSON), in its environment only. */
export const PUSH_AHEAD_JOB_ENV = 'CAIRN_PUSH_AHEAD_JOB';
/** The prefetch worker's job (JSON), in its environment only. */
export const PREFETCH_JOB_ENV = 'CAIRN_PREFETCH_JOB';
/**
 * Set by the compiled fast path (packages/core/native/spool-fast.c) when it
 * has waited the whole poll budget for a claim or a fetch in progress and
 * hands the call to the bash wrapper: the wrapper then does not wait a second
 * time, and unsets it before starting Node.
 */
export const SPOOL_WAITED_ENV = 'CAIRN_SPOOL_WAITED';
/**
 * CAIRN_* variables left out of the context: they are not settings of the
 * call but set by a wrapper or for a worker, so a call with them must key the
 * same directory as one without.
 */
export const NOT_CONTEXT_ENV: readonly string[] = [WRAPPED_ENV, PUSH_AHEAD_JOB_ENV, PREFETCH_JOB_ENV, SPOOL_WAITED_ENV];
/** The variables a worker's job may travel in (worker.ts): only ones left out of the context. */
export type WorkerJobEnv = typeof PUSH_AHEAD_JOB_ENV | typeof PREFETCH_JOB_ENV;

/**
 * A push-ahead record's content: the archived file's identity as
 * `stat -c` prints it (device, inode, size, mtime, ctime with nanoseconds),
 * so the wrapper compares one line with one stat. A file rewritten in place
 * changes its ctime, a replaced one its inode.
 */
export const IDENTITY_STAT_FORMAT = '%d %i %s %.9Y %.9Z';
/**
 * The wrapper's one stat of every checked path: mode (hex) and owner for the
 * kind check, then the identity; spool_check reads "m u rest" per line.
 */
export const CHECK_STAT_FORMAT = `%f %u ${IDENTITY_STAT_FORMAT}`;
/** <walName>.ok: a push-ahead record. */
export const RECORD_SUFFIX = '.ok';
/** <walName>.claim: the pid archiving that file now. */
export const CLAIM_SUFFIX = '.claim';
/**
 * A fetch in progress writes `.<walName>.cairn-tmp.<pid>.<random>` beside the
 * entry (util/local-file.ts tempPathFor), then renames it to <walName>: the
 * wrapper waits while one exists, GetSpool.clear removes leftovers.
 */
export const TEMP_INFIX = '.cairn-tmp.';

/**
 * The WAL file names wal-push's wrapper recognises as %f (the four shapes of
 * core/wal/file-name.ts; Node validates the rest). POSIX ERE, the same in
 * bash's =~ and a JavaScript RegExp.
 */
export const WAL_NAME_PATTERN = '^[0-9A-F]{8}(\\.history|[0-9A-F]{16}(\\.partial|\\.[0-9A-F]{8}\\.backup)?)$';
/** The names wal-get's spool serves: segments only (core/wal/file-name.ts isSegmentName). */
export const SEGMENT_NAME_PATTERN = '^[0-9A-F]{24}$';

/** Between two looks at a claim or a fetch in progress (bash sleeps this long; it has no event to wait on). */
export const POLL_MS = 20;
/** How long PostgreSQL's wal-push call waits for the worker archiving the same file, then decides itself. */
export const PUSH_CLAIM_WAIT_MS = 120_000;
/**
 * How long cairn-wal-get's wrapper waits for the prefetch worker fetching the
 * asked-for segment before starting Node, which then fetches it itself (Node
 * does not wait: it is the slow path already).
 */
export const GET_FETCH_WAIT_MS = 10_000;

/**
 * wal-get's statuses through the wrapper: Node exits WRAPPED_NOT_FOUND for
 * "not found" and the wrapper turns it into NOT_FOUND; every other failure
 * (Node failing to start exits 1 too) leaves as FAILED, so a broken install
 * never reads as "not in the archive" (docs/design.md §4 rule 12).
 */
export const WAL_GET_EXIT = { OK: EXIT.OK, NOT_FOUND: EXIT.NOT_FOUND, WRAPPED_NOT_FOUND: 99, FAILED: EXIT.WAL_GET_PERSISTENT } as const;

/**
 * The bash variables the generator writes, name → value, in this order.
 * Only plain assignments: the wrappers run once per WAL segment and start no
 * extra process for them.
 */
export function bashContract(): [string, string][] {
  return [
    ['sp_wal_dir', WAL_DIR],
    ['sp_dir_name', SPOOL_DIR_NAME],
    ['sp_kind_push', SPOOL_KINDS[0]],
    ['sp_kind_get', SPOOL_KINDS[1]],
    ['sp_context_file', CONTEXT_FILE],
    ['sp_ctx_header', CONTEXT_HEADER],
    ['sp_ctx_cwd', CONTEXT_CWD],
    ['sp_ctx_arg', CONTEXT_ARG],
    ['sp_ctx_env', CONTEXT_ENV],
    ['sp_ctx_config', CONTEXT_CONFIG],
    ['sp_ctx_present', CONTEXT_PRESENT],
    ['sp_ctx_absent', CONTEXT_ABSENT],
    ['sp_default_config', CONTEXT_DEFAULT_CONFIG],
    // Spaces around each name: the wrapper tests [[ $list == *" $v "* ]].
    ['sp_not_context_env', ` ${NOT_CONTEXT_ENV.join(' ')} `],
    ['sp_wrapped_env', WRAPPED_ENV],
    ['sp_wrapped_value', WRAPPED_VALUE],
    ['sp_waited_env', SPOOL_WAITED_ENV],
    ['sp_stat_format', CHECK_STAT_FORMAT],
    ['sp_record_suffix', RECORD_SUFFIX],
    ['sp_claim_suffix', CLAIM_SUFFIX],
    ['sp_temp_infix', TEMP_INFIX],
    ['sp_wal_name_re', WAL_NAME_PATTERN],
    ['sp_segment_name_re', SEGMENT_NAME_PATTERN],
    ['sp_poll_s', (POLL_MS / 1000).toString()],
    ['sp_push_claim_polls', String(PUSH_CLAIM_WAIT_MS / POLL_MS)],
    ['sp_get_fetch_polls', String(GET_FETCH_WAIT_MS / POLL_MS)],
    ['sp_exit_ok', String(WAL_GET_EXIT.OK)],
    ['sp_exit_not_found', String(WAL_GET_EXIT.NOT_FOUND)],
    ['sp_exit_wrapped_not_found', String(WAL_GET_EXIT.WRAPPED_NOT_FOUND)],
    ['sp_exit_failed', String(WAL_GET_EXIT.FAILED)],
  ];
}

/**
 * The C header's values (packages/core/native/spool-contract.h): the bash
 * variables, plus what C needs as numbers or lists rather than bash text.
 * A value that is a whole number is written as a number, every other one as
 * a string literal.
 */
export function nativeContract(): [string, string | number | readonly string[]][] {
  const numeric = /^(sp_.*_polls|sp_exit_.*)$/;
  return [
    ...bashContract()
      .filter(([n]) => n !== 'sp_poll_s' && n !== 'sp_not_context_env')
      .map(([n, v]): [string, string | number] => [n, numeric.test(n) ? Number(v) : v]),
    ['sp_poll_ms', POLL_MS],
    ['sp_not_context_env', NOT_CONTEXT_ENV],
  ];
}
