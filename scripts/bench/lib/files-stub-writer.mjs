// The stub writer of the files simulation (issue 19): cairn-restore's own
// code runs (tools/restore/dist/restore.js, restore()), and the data files it
// writes under one directory reach no disk. restore() writes a small file
// with node:fs's synchronous calls (openSync, writeSync, futimesSync,
// fchmodSync, fchownSync, closeSync: fetchFile in tools/restore/src/restore.ts);
// those are replaced here, for paths below `root` only, by calls that count
// and write nothing, and node:module's syncBuiltinESMExports() makes the
// tools' `import { openSync } from 'node:fs'` see them. Everything else (its
// marker, directories, backup_label, recovery settings, `sync -f`) is real.

import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

/** Fake descriptors are numbers from here on, far above any real one. */
const FAKE_FD = 1 << 30;

/**
 * Stubs the writes of files below `root` (a directory path ending in "/");
 * returns the counters: files opened, bytes "written".
 */
export function stubWritesBelow(root) {
  const real = { openSync: fs.openSync, writeSync: fs.writeSync, closeSync: fs.closeSync, futimesSync: fs.futimesSync, fchmodSync: fs.fchmodSync, fchownSync: fs.fchownSync };
  const stats = { files: 0, bytes: 0, open: 0, maxOpen: 0 };
  let next = FAKE_FD;
  const fake = (fd) => typeof fd === 'number' && fd >= FAKE_FD;
  fs.openSync = (path, ...rest) => {
    if (typeof path !== 'string' || !path.startsWith(root)) return real.openSync(path, ...rest);
    stats.files++;
    stats.maxOpen = Math.max(stats.maxOpen, ++stats.open);
    return next++;
  };
  fs.writeSync = (fd, data, ...rest) => {
    if (!fake(fd)) return real.writeSync(fd, data, ...rest);
    // writeSync(fd, buffer, offset, length): all of it "written".
    const [offset = 0, length = data.length - offset] = rest;
    stats.bytes += length;
    return length;
  };
  fs.closeSync = (fd) => (fake(fd) ? void stats.open-- : real.closeSync(fd));
  for (const name of ['futimesSync', 'fchmodSync', 'fchownSync']) fs[name] = (fd, ...rest) => (fake(fd) ? undefined : real[name](fd, ...rest));
  syncBuiltinESMExports();
  return stats;
}
