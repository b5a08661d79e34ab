// Whether a file is a statically linked ELF program: what a release ships
// as wal-push's and wal-get's compiled fast path (scripts/package.mjs), so it
// runs in any postgres image whatever its libc; the package test checks the
// installed copies with the same function.
import { readFileSync } from 'node:fs';

/** Whether `path` is an ELF64 little-endian executable without a program interpreter (PT_INTERP). */
export function isStaticElf(path) {
  let b;
  try {
    b = readFileSync(path);
  } catch {
    return false;
  }
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) return false;
  const phoff = Number(b.readBigUInt64LE(0x20));
  const phentsize = b.readUInt16LE(0x36);
  const phnum = b.readUInt16LE(0x38);
  if (phnum === 0 || phoff + phentsize * phnum > b.length) return false;
  for (let i = 0; i < phnum; i++) if (b.readUInt32LE(phoff + i * phentsize) === 3) return false; // PT_INTERP
  return true;
}
