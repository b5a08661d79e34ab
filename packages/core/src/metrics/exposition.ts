// Metric families and the Prometheus text exposition format (version 0.0.4,
// the format node_exporter's textfile collector reads): rendered here rather
// than by a client library so the output is byte-stable (families by name,
// samples by labels) and a golden file can pin it.

export type MetricType = 'gauge' | 'counter';

export interface Sample {
  /** Label name → value; an empty value is left out (Prometheus treats `l=""` as no label). */
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * One family per name with the samples of all inputs (several repositories
 * each give a `cairn_backups` family; the format wants one HELP/TYPE block
 * per name). Throws on a name given two types: that is a bug.
 */
export function mergeFamilies(lists: readonly (readonly MetricFamily[])[]): MetricFamily[] {
  const byName = new Map<string, MetricFamily>();
  for (const list of lists) {
    for (const f of list) {
      const have = byName.get(f.name);
      if (have === undefined) byName.set(f.name, { ...f, samples: [...f.samples] });
      else if (have.type !== f.type) throw new Error(`metric ${f.name} declared as ${have.type} and ${f.type}`);
      else have.samples.push(...f.samples);
    }
  }
  return [...byName.values()];
}

function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function formatLabels(labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .filter((k) => labels[k] !== '')
    .sort()
    .map((k) => {
      if (!LABEL_RE.test(k) || k.startsWith('__')) throw new Error(`invalid label name ${JSON.stringify(k)}`);
      return `${k}="${escapeLabelValue(labels[k]!)}"`;
    });
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/**
 * The families as exposition text: sorted by name, samples sorted by their
 * label set, no timestamps (Prometheus stamps the scrape). Families without
 * samples are left out. Throws on an invalid name or on two samples with the
 * same labels (Prometheus would reject the whole scrape).
 */
export function renderExposition(families: readonly MetricFamily[]): string {
  const out: string[] = [];
  for (const f of [...mergeFamilies([families])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (f.samples.length === 0) continue;
    if (!NAME_RE.test(f.name)) throw new Error(`invalid metric name ${JSON.stringify(f.name)}`);
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    const lines = f.samples.map((s) => ({ labels: formatLabels(s.labels), value: formatValue(s.value) }));
    lines.sort((a, b) => (a.labels < b.labels ? -1 : a.labels > b.labels ? 1 : 0));
    for (let i = 0; i < lines.length; i++) {
      if (i > 0 && lines[i]!.labels === lines[i - 1]!.labels) throw new Error(`duplicate sample ${f.name}${lines[i]!.labels}`);
      out.push(`${f.name}${lines[i]!.labels} ${lines[i]!.value}`);
    }
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}

/** Parses exposition text back into `name{labels}` → value (tests and tools that check a file). */
export function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${JSON.stringify(line)}`);
    const raw = m[2]!;
    const v = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (Number.isNaN(v) && raw !== 'NaN') throw new Error(`bad value in ${JSON.stringify(line)}`);
    out.set(m[1]!, v);
  }
  return out;
}
