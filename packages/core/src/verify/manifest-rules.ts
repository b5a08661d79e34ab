// cairn-verify's view of the manifest rules (core backup/manifest-rules): a
// manifest cairn-restore would refuse, or whose modes it would have to mask,
// is a problem; objects it names outside its chain are not read.

import { backupChainIds, checkManifestRules, createManifestChecker, namesChainObject, namesConfigObject, pageChainProblem, type ManifestFinding } from '../backup/manifest-rules.js';
import { manifestKey, type BackupManifest, type ManifestConfigFile, type ManifestFile } from '../backup/manifest.js';
import type { OpenedManifest } from '../backup/manifest-stream.js';
import { quote } from '../wal/quote.js';
import type { VerifyProblem } from './result-format.js';

/** Findings reported per backup; the rest are counted in the last one. */
const MAX_REPORTED = 10;

/**
 * Pushes a `manifest-invalid` problem for each rule `m` breaks and returns
 * the manifest without the file entries that name objects outside its
 * chain's prefixes: verify reads what a restore would, never more.
 */
export function screenManifest(m: BackupManifest, cluster: string, problems: VerifyProblem[]): BackupManifest {
  const findings = checkManifestRules(m, cluster);
  if (findings.length === 0) return m;
  reportFindings(findings, m.id, cluster, problems);
  const chain = backupChainIds(m);
  const files = m.files.filter((f) => namesChainObject(f, cluster, chain) && (f.pages === undefined || pageChainProblem(f, cluster, chain) === undefined));
  // A configuration entry is read only from this backup's own config/ objects.
  const config = Array.isArray(m.config) ? m.config.filter((c) => namesConfigObject(c, cluster, m.id)) : undefined;
  return files.length === m.files.length && config?.length === m.config?.length ? m : { ...m, files, ...(config !== undefined ? { config } : {}) };
}

/** One `manifest-invalid` problem per finding (MAX_REPORTED at most, the rest counted). */
function reportFindings(findings: readonly ManifestFinding[], id: string, cluster: string, problems: VerifyProblem[]): void {
  const key = manifestKey(cluster, id);
  findings.slice(0, MAX_REPORTED).forEach((f, i) => {
    const more = i === MAX_REPORTED - 1 && findings.length > MAX_REPORTED ? ` (and ${findings.length - MAX_REPORTED} more findings)` : '';
    problems.push({
      kind: 'manifest-invalid',
      subject: id,
      key,
      message: `backup ${quote(id)}: manifest ${f.message}${more}`,
      hint: f.kind === 'refuse'
        ? 'cairn-restore refuses this backup (the manifest was altered or damaged): restore another one and take a new full backup'
        : 'cairn-restore masks the mode to what PostgreSQL creates; the manifest was altered or the source directory had unusual modes: take a new full backup',
    });
  });
}

/**
 * screenManifest for a manifest read as a stream (issue 19): its
 * configuration entries that may be read, its file records that may be read
 * (each checked as it passes), and `end()`, which reports the findings once
 * the records have been walked. Bounded state whatever the file count.
 */
export function screenManifestStream(opened: OpenedManifest, cluster: string, problems: VerifyProblem[], signal?: AbortSignal): {
  config: ManifestConfigFile[];
  files: () => AsyncGenerator<ManifestFile>;
  end: () => void;
} {
  const check = createManifestChecker(opened.head, cluster);
  const id = opened.head.id;
  const config = Array.isArray(opened.head.config) ? opened.head.config.filter((c) => namesConfigObject(c, cluster, id)) : [];
  return {
    config,
    async *files() {
      for await (const f of opened.files(signal)) if (check.file(f)) yield f;
    },
    end: () => reportFindings(check.findings, id, cluster, problems),
  };
}
