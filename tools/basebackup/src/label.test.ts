import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBackupLabel } from './label.js';

const label = (start: string, ckpt: string) =>
  `START WAL LOCATION: ${start} (file 000000010000000000000005)\nCHECKPOINT LOCATION: ${ckpt}\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-21 15:22:00 UTC\nLABEL: x\nSTART TIMELINE: 1\n`;

test('both LSN spellings in backup_label: up to PostgreSQL 18 (0/5000028) and 19\'s zero-padded low half (0/05000028)', () => {
  for (const [start, ckpt] of [['0/5000028', '0/5000060'], ['0/05000028', '0/05000060']] as const) {
    const l = parseBackupLabel(label(start, ckpt));
    assert.equal(l.startLsn, 0x5000028n, start);
    assert.equal(l.checkpointLsn, 0x5000060n, ckpt);
    assert.equal(l.startWal, '000000010000000000000005');
    assert.equal(l.startTime.toISOString(), '2026-11-21T15:22:00.000Z');
  }
});

test('a label without its start location is refused with one line', () => {
  assert.throws(() => parseBackupLabel('CHECKPOINT LOCATION: 0/5000060\n'), /backup_label lacks START WAL LOCATION/);
});
