// The encryption key from a command (--encryption-key-command, issue 18 item 4):
// Vault, `aws kms decrypt`, gpg or age print the key on stdout. The command
// runs without a shell (its words are split here, see parseKeyCommand), in
// the tool's environment, with a timeout; its output is the key and is never
// logged or put in a message; on failure its stderr (a bounded tail, on one
// line) and exit status are the error, exit 3.

import { CairnError } from '../cli/errors.js';
import { describeExit, startProgram } from '../util/program.js';
import { encryptionKeyFromBytes, type EncryptionKey } from './encrypt.js';

/** A key command that has not printed its key by then is stopped. */
export const KEY_COMMAND_TIMEOUT_MS = 60_000;
/** A key is a few dozen bytes: more output than this is not a key. */
const MAX_KEY_OUTPUT = 64 * 1024;
/** How much of the command's stderr a message quotes. */
const STDERR_IN_MESSAGE = 400;

const HINT = 'run the command by hand as this user to see why, or correct encryption-key-command (--encryption-key-command, CAIRN_ENCRYPTION_KEY_COMMAND)';

function invalid(message: string): CairnError {
  return new CairnError('CONFIG_INVALID', message, {
    hint: 'give a program and its arguments, e.g. encryption-key-command = vault kv get -field=key secret/cairn, or a JSON array ["vault","kv","get","-field=key","secret/cairn"]; no shell runs it',
  });
}

/**
 * Splits a key command into argv, with no shell: a JSON array of strings is
 * taken as it is; otherwise words are separated by blanks, '…' quotes
 * literally, "…" quotes with \" and \\ escapes, and a backslash outside
 * quotes escapes the next character. `$`, `|`, `>`, `*`, `~` mean nothing: a
 * pipeline needs a script (`sh -c '…'` says so explicitly).
 */
export function parseKeyCommand(cmd: string): string[] {
  const text = cmd.trim();
  if (text.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw invalid('encryption key command starts with "[" but is not a JSON array');
    }
    if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((w) => typeof w === 'string') || parsed[0] === '') {
      throw invalid('encryption key command is a JSON array, but not a non-empty array of strings');
    }
    return parsed as string[];
  }
  const words: string[] = [];
  let word: string | undefined;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      if (word !== undefined) words.push(word);
      word = undefined;
      i++;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw invalid('encryption key command has an unterminated \' quote');
      word = (word ?? '') + text.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      let s = '';
      i++;
      for (;;) {
        if (i >= text.length) throw invalid('encryption key command has an unterminated " quote');
        const d = text[i]!;
        if (d === '"') break;
        if (d === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) {
          s += text[i + 1];
          i += 2;
        } else {
          s += d;
          i++;
        }
      }
      word = (word ?? '') + s;
      i++;
    } else if (c === '\\') {
      if (i + 1 >= text.length) throw invalid('encryption key command ends with a lone backslash');
      word = (word ?? '') + text[i + 1];
      i += 2;
    } else {
      word = (word ?? '') + c;
      i++;
    }
  }
  if (word !== undefined) words.push(word);
  if (words.length === 0 || words[0] === '') throw invalid('encryption key command is empty');
  return words;
}

/** The command's stderr on one line, its tail, bounded. */
function stderrLine(stderr: string): string {
  const one = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '').join(' / ');
  return one.length > STDERR_IN_MESSAGE ? `…${one.slice(-STDERR_IN_MESSAGE)}` : one;
}

/**
 * Runs the key command and makes the key from what it printed (one trailing
 * newline removed, as from a key file). Throws KEY_INVALID (exit 3) when it
 * cannot start, fails, times out or prints too little or too much;
 * CONFIG_INVALID when the command cannot be parsed. Messages name the
 * program (argv[0]) only: its arguments may carry a token.
 */
export async function runKeyCommand(
  cmd: string,
  env: NodeJS.ProcessEnv,
  o: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<EncryptionKey> {
  const [program, ...args] = parseKeyCommand(cmd);
  const label = `encryption key command "${program!}"`;
  const p = startProgram(program!, args, {
    env,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'collect',
    signal: o.signal,
    timeoutMs: o.timeoutMs ?? KEY_COMMAND_TIMEOUT_MS,
  });
  const parts: Buffer[] = [];
  let size = 0;
  let tooLong = false;
  try {
    for await (const chunk of p.stdout()) {
      const b = chunk as Buffer;
      if (size + b.length > MAX_KEY_OUTPUT) {
        tooLong = true;
        p.kill();
        break;
      }
      parts.push(b);
      size += b.length;
    }
  } catch {
    // The exit below says how it failed.
  }
  const exit = await p.exited;
  const material = Buffer.concat(parts);
  for (const b of parts) b.fill(0);
  try {
    if (tooLong) {
      throw new CairnError('KEY_INVALID', `${label} printed more than ${MAX_KEY_OUTPUT / 1024} KiB, which is not a key`, { hint: HINT });
    }
    if (exit.error || exit.timedOut || exit.code !== 0 || exit.signal) {
      const why = exit.timedOut ? `did not finish within ${Math.round((o.timeoutMs ?? KEY_COMMAND_TIMEOUT_MS) / 1000)} s` : exit.error ? `could not run: ${exit.error.message}` : `failed (${describeExit(exit)})`;
      const err = stderrLine(exit.stderr);
      throw new CairnError('KEY_INVALID', `${label} ${why}${err === '' ? '' : `: ${err}`}`, { hint: HINT });
    }
    let end = material.length;
    if (end > 0 && material[end - 1] === 0x0a) {
      end--;
      if (end > 0 && material[end - 1] === 0x0d) end--;
    }
    if (end === 0) throw new CairnError('KEY_INVALID', `${label} printed no key`, { hint: HINT });
    return encryptionKeyFromBytes(material.subarray(0, end), `command ${program!}`);
  } finally {
    material.fill(0);
  }
}
