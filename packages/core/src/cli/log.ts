// Logging to stderr: one line per event, levels, optional JSON lines; every
// line redacted and escaped like an error (cli/message.ts).

import { redactSecrets, safeMessage } from './message.js';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  readonly level: LogLevel;
}

export function isLogLevel(s: string): s is LogLevel {
  return s in ORDER;
}

export function createLogger(opts: {
  tool: string;
  level: LogLevel;
  json: boolean;
  write: (line: string) => void;
}): Logger {
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] > ORDER[opts.level]) return;
    if (opts.json) {
      opts.write(redactSecrets(JSON.stringify({ time: new Date().toISOString(), level: lvl, tool: opts.tool, msg, ...fields })) + '\n');
      return;
    }
    const extra = fields && Object.keys(fields).length > 0
      ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')
      : '';
    opts.write(`${opts.tool}: ${lvl === 'info' ? '' : lvl + ': '}${safeMessage(msg + extra)}\n`);
  };
  return {
    level: opts.level,
    error: (m, f) => emit('error', m, f),
    warn: (m, f) => emit('warn', m, f),
    info: (m, f) => emit('info', m, f),
    debug: (m, f) => emit('debug', m, f),
  };
}

/** A logger that drops everything (library use, tests). */
export const silentLogger: Logger = createLogger({ tool: 'cairn', level: 'error', json: false, write: () => {} });
