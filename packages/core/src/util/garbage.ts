// Buffers of a few MiB that die young, and the memory V8 does not count.
//
// A compressed piece of a backup is a fresh Buffer of up to 4 MiB (data that
// does not compress). Its JS object is tiny, so the young generation fills
// slowly and scavenges are rare; V8 collects for the memory outside its heap
// only once that has grown by 64 MiB since the last collection. Each thread
// (the main one and every file worker) so held up to 64 MiB of dead pieces,
// all resident: issue 16's random data set peaked at 273-277 MB of the 300
// MB it allows. A minor collection after every 16 MiB of such Buffers frees
// them (peak 203-208 MB, no slower); one costs ~0.15 ms.
//
// The collector comes from V8's own extension, enabled at run time the way
// test runners do it (jest's leak detector): no command-line flag, and where
// it cannot be had this does nothing.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Collect = (opts: { type: 'minor' | 'major' }) => void;

let collect: Collect | null | undefined;

function collector(): Collect | null {
  if (collect !== undefined) return collect;
  collect = null;
  try {
    const existing = (globalThis as { gc?: unknown }).gc;
    if (typeof existing === 'function') return (collect = existing as Collect);
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    if (typeof fn === 'function') collect = fn as Collect;
  } catch {
    // V8 refused the flag: collect stays null, and the meter does nothing.
  }
  return collect;
}

/** Bytes of short-lived Buffers between two minor collections. */
export const GARBAGE_STEP = 16 * 1024 * 1024;

/**
 * A meter for one kind of short-lived Buffer on this thread: note each one's
 * length as it is made; every `step` bytes a minor collection frees those
 * already dropped.
 */
export function garbageMeter(step = GARBAGE_STEP): (bytes: number) => void {
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since < step) return;
    since = 0;
    collector()?.({ type: 'minor' });
  };
}
