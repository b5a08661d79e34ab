// The config file accepts exactly the keys some tool reads: core's list
// (which every bin checks against) must match the tools' settings.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allSettings } from '@cairn/core/cli/run';
import { KNOWN_CONFIG_KEYS } from '@cairn/core/config/known-keys';
import { TOOLS } from './tools.js';

test('KNOWN_CONFIG_KEYS is the union of every tool\'s config-file settings', async () => {
  const keys = new Set<string>();
  for (const t of Object.values(TOOLS)) {
    for (const s of allSettings(await t.load())) if (!s.flagOnly) keys.add(s.name);
  }
  assert.deepEqual([...KNOWN_CONFIG_KEYS].sort(), [...keys].sort());
});
