// cairn-verify's view of the manifest rules (core backup/manifest-rules): a
// manifest cairn-restore would refuse, or whose modes it would have to mask,
// is a problem; objects it names outside its chain are not read.

import { backupChainIds, checkManifestRules, namesChainObject, namesConfigObject, pageChainProblem } from '../backup/manifest-rules.js';
import { manifestKey, type BackupManifest } from '../backup/manifest.js';
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
  const key = manifestKey(cluster, m.id);
  findings.slice(0, MAX_REPORTED).forEach((f, i) => {
    const more = i === MAX_REPORTED - 1 && findings.length > MAX_REPORTED ? ` (and ${findings.length - MAX_REPORTED} more findings)` : '';
    problems.push({
      kind: 'manifest-invalid',
      subject: m.id,
      key,
      message: `backup ${quote(m.id)}: manifest ${f.message}${more}`,
      hint: f.kind === 'refuse'
        ? 'cairn-restore refuses this backup (the manifest was altered or damaged): restore another one and take a new full backup'
        : 'cairn-restore masks the mode to what PostgreSQL creates; the manifest was altered or the source directory had unusual modes: take a new full backup',
    });
  });
  const chain = backupChainIds(m);
  const files = m.files.filter((f) => namesChainObject(f, cluster, chain) && (f.pages === undefined || pageChainProblem(f, cluster, chain) === undefined));
  // A configuration entry is read only from this backup's own config/ objects.
  const config = Array.isArray(m.config) ? m.config.filter((c) => namesConfigObject(c, cluster, m.id)) : undefined;
  return files.length === m.files.length && config?.length === m.config?.length ? m : { ...m, files, ...(config !== undefined ? { config } : {}) };
}
