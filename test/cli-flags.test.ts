/**
 * The commander flag parsers of src/cli/flags.ts that have no CLI test of their own: a bad value
 * is commander's InvalidArgumentError naming the rule, before any work starts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from 'commander';
import { wordList } from '../src/cli/flags.js';

test('wordList: comma-separated allowed words, trimmed; any other word refused by name', () => {
  const parse = wordList(['full', 'causal', 'sw_causal'] as const);
  assert.deepEqual(parse('full'), ['full']);
  assert.deepEqual(parse('causal, full,sw_causal'), ['causal', 'full', 'sw_causal']);
  for (const bad of ['', 'full,', 'ful', 'full,Causal']) {
    assert.throws(() => parse(bad), (e: unknown) => e instanceof InvalidArgumentError && e.message.includes('is not one of full, causal, sw_causal'), bad);
  }
});
