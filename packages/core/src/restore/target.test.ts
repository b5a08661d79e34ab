import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { throwsWith } from '../testing/errors.js';
import type { Settings } from '../config/settings.js';
import { parseTarget, parseTargetTime, recoverySettingsFor, TARGET_SETTINGS } from './target.js';
import type { RecoveryTarget } from './plan-format.js';

describe('parseTargetTime', () => {
  const accepted: [string, string][] = [
    ['2026-11-21 14:03:00+00', '2026-11-21 14:03:00.000000+00'],
    ['2026-11-21T14:03:00Z', '2026-11-21 14:03:00.000000+00'],
    ['2026-11-21t14:03:00z', '2026-11-21 14:03:00.000000+00'],
    ['2026-11-21 14:03:00.123456+00', '2026-11-21 14:03:00.123456+00'],
    ['2026-11-21T14:03:00.5Z', '2026-11-21 14:03:00.500000+00'],
    ['2026-11-21 14:03:00,25 UTC', '2026-11-21 14:03:00.250000+00'],
    ['2026-11-21 14:03:00.1234567+00', '2026-11-21 14:03:00.123457+00'], // rounded to µs
    ['2026-11-21 14:03:00.9999996+00', '2026-11-21 14:03:01.000000+00'],
    ['2026-11-21 14:03+01', '2026-11-21 13:03:00.000000+00'],
    ['2026-11-21 14:03:00-05:30', '2026-11-21 19:33:00.000000+00'],
    ['2026-11-21 14:03:00 +0530', '2026-11-21 08:33:00.000000+00'],
    ['2026-11-21 00:30:00+01', '2026-11-20 23:30:00.000000+00'], // across midnight
    ['2026-02-28 23:59:59.999999-01', '2026-03-01 00:59:59.999999+00'],
    ['  2024-02-29 4:05:06 GMT ', '2024-02-29 04:05:06.000000+00'],
  ];
  for (const [input, want] of accepted) {
    test(`accepts ${JSON.stringify(input)}`, () => assert.equal(parseTargetTime(input).text, want));
  }

  test('micros since the epoch', () => {
    assert.equal(parseTargetTime('1970-01-01 00:00:01.000002+00').micros, 1_000_002n);
    assert.equal(parseTargetTime('1970-01-01 00:00:00+01').micros, -3_600_000_000n);
    assert.equal(parseTargetTime('1970-01-01 00:00:00.5+01').text, '1969-12-31 23:00:00.500000+00');
  });

  const refused: [string, RegExp][] = [
    ['2026-01-01', /^target time "2026-01-01" has no time of day and no time zone$/],
    ['2026-11-21 14:03:00', /^target time "2026-11-21 14:03:00" has no time zone$/],
    ['2026-11-21T14:03:00.5', /has no time zone$/],
    ['2026-11-21 14:03:00 Europe/Paris', /names the time zone "Europe\/Paris"; only a numeric offset, Z or UTC is accepted/],
    ['2026-11-21 14:03:00 EST', /names the time zone "EST"/],
    ['2026-02-30 14:03:00+00', /no such date or time/],
    ['2026-11-21 25:03:00+00', /no such date or time/],
    ['2026-13-01 00:00:00+00', /no such date or time/],
    ['2026-11-21 14:03:00+16', /offset out of range/],
    ['yesterday', /^invalid target time "yesterday"$/],
    ['', /^invalid target time ""$/],
  ];
  for (const [input, msg] of refused) {
    test(`refuses ${JSON.stringify(input)}`, () => {
      throwsWith(() => parseTargetTime(input), 'USAGE', msg);
    });
  }

  test('the zone-less refusal says why', () => {
    const e = throwsWith(() => parseTargetTime('2026-11-21 14:03:00'), 'USAGE');
    assert.match(e.hint ?? '', /TimeZone/);
    assert.match(e.hint ?? '', /2026-11-21 14:03:00\+00/);
  });
});

describe('parseTarget', () => {
  /** Settings as resolveSettings gives them: defaults filled in. */
  const base = (): Settings => Object.fromEntries(TARGET_SETTINGS.map((d) => [d.name, d.default]));
  const parse = (s: Settings) => parseTarget({ ...base(), ...s });

  const cases: { name: string; settings: Settings; target: RecoveryTarget; set?: string }[] = [
    { name: 'nothing: latest', settings: {}, target: { kind: 'latest', timeline: 'latest', action: 'pause', inclusive: true } },
    { name: '--target latest', settings: { target: 'latest' }, target: { kind: 'latest', timeline: 'latest', action: 'pause', inclusive: true } },
    { name: '--target immediate', settings: { target: 'immediate', 'target-action': 'promote' }, target: { kind: 'immediate', timeline: 'latest', action: 'promote', inclusive: true } },
    {
      name: 'time, exclusive, timeline current',
      settings: { 'target-time': '2026-11-21T14:03:00Z', 'target-exclusive': true, 'target-timeline': 'current' },
      target: { kind: 'time', value: '2026-11-21 14:03:00.000000+00', timeline: 'current', action: 'pause', inclusive: false },
    },
    { name: 'xid', settings: { 'target-xid': '00001234' }, target: { kind: 'xid', value: '1234', timeline: 'latest', action: 'pause', inclusive: true } },
    { name: 'xid8', settings: { 'target-xid': '4294967299' }, target: { kind: 'xid', value: '4294967299', timeline: 'latest', action: 'pause', inclusive: true } },
    { name: 'lsn normalised', settings: { 'target-lsn': '0/05a0b0C8', 'target-timeline': '003' }, target: { kind: 'lsn', value: '0/5A0B0C8', timeline: '3', action: 'pause', inclusive: true } },
    { name: 'name', settings: { 'target-name': 'before upgrade', 'target-action': 'shutdown' }, target: { kind: 'name', value: 'before upgrade', timeline: 'latest', action: 'shutdown', inclusive: true } },
    // recovery_target_inclusive means nothing to a restore point: ignored.
    { name: 'exclusive ignored for a name', settings: { 'target-name': 'x', 'target-exclusive': true }, target: { kind: 'name', value: 'x', timeline: 'latest', action: 'pause', inclusive: true } },
    { name: '--set', settings: { set: '20261121-020000F' }, target: { kind: 'latest', timeline: 'latest', action: 'pause', inclusive: true }, set: '20261121-020000F' },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const got = parse(c.settings);
      assert.deepEqual(got.target, c.target);
      assert.equal(got.set, c.set);
    });
  }

  const errors: { name: string; settings: Settings; msg: RegExp }[] = [
    { name: 'two targets', settings: { 'target-time': '2026-11-21T14:03:00Z', 'target-xid': '5' }, msg: /^more than one recovery target: --target-time and --target-xid$/ },
    { name: 'a target and --target latest', settings: { 'target-lsn': '0/1', target: 'latest' }, msg: /^more than one recovery target: --target-lsn and --target latest$/ },
    { name: 'a target and --target immediate', settings: { 'target-name': 'x', target: 'immediate' }, msg: /--target-name and --target immediate/ },
    { name: 'bad --target', settings: { target: 'now' }, msg: /^invalid --target "now"$/ },
    { name: 'bad xid', settings: { 'target-xid': '12ab' }, msg: /^invalid target transaction id "12ab"$/ },
    { name: 'xid 2', settings: { 'target-xid': '2' }, msg: /^invalid target transaction id "2"$/ },
    { name: 'bad lsn', settings: { 'target-lsn': '5000028' }, msg: /^invalid target LSN "5000028"$/ },
    { name: 'empty name', settings: { 'target-name': '' }, msg: /^invalid restore point name ""$/ },
    { name: 'long name', settings: { 'target-name': 'x'.repeat(64) }, msg: /^invalid restore point name/ },
    { name: 'bad timeline', settings: { 'target-timeline': '0x2' }, msg: /^invalid --target-timeline "0x2"$/ },
    { name: 'timeline 0', settings: { 'target-timeline': '0' }, msg: /^invalid --target-timeline "0"$/ },
    { name: 'bad action', settings: { 'target-action': 'resume' }, msg: /^invalid --target-action "resume"$/ },
    { name: 'bad set', settings: { set: 'latest' }, msg: /^invalid backup id "latest"$/ },
    { name: 'zone-less time', settings: { 'target-time': '2026-01-01' }, msg: /has no time of day and no time zone/ },
  ];
  for (const c of errors) {
    test(`refuses: ${c.name}`, () => {
      throwsWith(() => parse(c.settings), 'USAGE', c.msg);
    });
  }
});

describe('recoverySettingsFor', () => {
  const t = (o: Partial<RecoveryTarget>): RecoveryTarget => ({ kind: 'latest', timeline: 'latest', action: 'pause', inclusive: true, ...o });
  const cases: { target: RecoveryTarget; tli: number | string; want: Record<string, string> }[] = [
    { target: t({}), tli: 3, want: { recovery_target_timeline: '3' } },
    { target: t({ kind: 'immediate', action: 'promote' }), tli: 1, want: { recovery_target: 'immediate', recovery_target_timeline: '1', recovery_target_action: 'promote' } },
    {
      target: t({ kind: 'time', value: '2026-11-21 14:03:00.000000+00', inclusive: false }),
      tli: 2,
      want: { recovery_target_time: '2026-11-21 14:03:00.000000+00', recovery_target_timeline: '2', recovery_target_action: 'pause', recovery_target_inclusive: 'off' },
    },
    { target: t({ kind: 'xid', value: '1234' }), tli: 1, want: { recovery_target_xid: '1234', recovery_target_timeline: '1', recovery_target_action: 'pause' } },
    { target: t({ kind: 'lsn', value: '0/5000028', action: 'shutdown' }), tli: 'latest', want: { recovery_target_lsn: '0/5000028', recovery_target_timeline: 'latest', recovery_target_action: 'shutdown' } },
    { target: t({ kind: 'name', value: 'nightly', inclusive: false }), tli: 4, want: { recovery_target_name: 'nightly', recovery_target_timeline: '4', recovery_target_action: 'pause' } },
  ];
  for (const c of cases) {
    test(`${c.target.kind}${c.target.inclusive ? '' : ' exclusive'}`, () => assert.deepEqual(recoverySettingsFor(c.target, c.tli), c.want));
  }
});
