// Parsers for the files operators install: /etc/cron.d schedules and systemd
// unit files. Strict: they throw on what cron or systemd would not read the
// way the file means it.

const FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  { name: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
] as const;

/** Checks one cron time field (`*`, N, N-M, lists, `/step`, names); returns the problem or undefined. */
export function cronFieldProblem(text: string, index: number): string | undefined {
  const f = FIELDS[index]!;
  const value = (v: string): number | undefined => {
    const names: readonly string[] | undefined = 'names' in f ? f.names : undefined;
    const n = names?.indexOf(v.toLowerCase()) ?? -1;
    if (n >= 0) return n + (f.name === 'month' ? 1 : 0);
    if (!/^\d+$/.test(v)) return undefined;
    const x = Number(v);
    return x >= f.min && x <= f.max ? x : undefined;
  };
  for (const part of text.split(',')) {
    const m = /^([^/]+)(?:\/(\d+))?$/.exec(part);
    if (!m) return `${f.name} "${text}": cannot read "${part}"`;
    const [, range, step] = m;
    if (step !== undefined && Number(step) < 1) return `${f.name} "${text}": step must be at least 1`;
    if (range === '*') continue;
    const [a, b, extra] = range!.split('-');
    if (extra !== undefined) return `${f.name} "${text}": "${range}" is not a range`;
    const lo = value(a!);
    if (lo === undefined) return `${f.name} "${text}": "${a}" is outside ${f.min}-${f.max}`;
    if (b !== undefined) {
      const hi = value(b);
      if (hi === undefined) return `${f.name} "${text}": "${b}" is outside ${f.min}-${f.max}`;
      if (hi < lo) return `${f.name} "${text}": range "${range}" runs backwards`;
    } else if (step !== undefined) {
      return `${f.name} "${text}": a step needs * or a range`;
    }
  }
  return undefined;
}

export interface CronJob {
  line: number;
  schedule: string[];
  user: string;
  command: string;
}

/** Parses an /etc/cron.d file (with the user field); throws naming the line on anything cron would not run. */
export function parseCronD(text: string): { env: Map<string, string>; jobs: CronJob[] } {
  const env = new Map<string, string>();
  const jobs: CronJob[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const kv = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (kv) {
      env.set(kv[1]!, kv[2]!);
      return;
    }
    const words = line.split(/\s+/);
    const special = /^@(reboot|yearly|annually|monthly|weekly|daily|midnight|hourly)$/.test(words[0]!);
    const n = special ? 1 : 5;
    if (words.length < n + 2) throw new Error(`crontab line ${i + 1}: expected ${n} time fields, a user and a command: ${line}`);
    const schedule = words.slice(0, n);
    if (!special) {
      schedule.forEach((field, k) => {
        const problem = cronFieldProblem(field, k);
        if (problem) throw new Error(`crontab line ${i + 1}: ${problem}`);
      });
    }
    const command = line.replace(new RegExp(`^(\\S+\\s+){${n + 1}}`), '');
    // cron turns an unescaped % into a newline: a command must not hold one.
    if (/(^|[^\\])%/.test(command)) throw new Error(`crontab line ${i + 1}: unescaped % in the command (cron reads it as a newline)`);
    jobs.push({ line: i + 1, schedule, user: words[n]!, command });
  });
  return { env, jobs };
}

export type UnitFile = Map<string, Map<string, string[]>>;

const KNOWN_SECTIONS: Record<string, string[]> = {
  service: ['Unit', 'Service', 'Install'],
  timer: ['Unit', 'Timer', 'Install'],
};

/** Reads a unit file (sections, Key=Value, comments, continuation lines); throws naming the line. */
export function parseUnit(text: string, name: string): UnitFile {
  const unit: UnitFile = new Map();
  let section: Map<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const sec = /^\[([A-Za-z]+)\]$/.exec(line);
    if (sec) {
      const allowed = KNOWN_SECTIONS[name.slice(name.lastIndexOf('.') + 1)] ?? [];
      if (!allowed.includes(sec[1]!)) throw new Error(`${name} line ${i + 1}: unexpected section [${sec[1]}]`);
      section = new Map();
      unit.set(sec[1]!, section);
      return;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line);
    if (!kv || section === undefined) throw new Error(`${name} line ${i + 1}: expected Key=Value inside a section: ${line}`);
    section.set(kv[1]!, [...(section.get(kv[1]!) ?? []), kv[2]!]);
  });
  return unit;
}

