/**
 * The contract tests run offline against the generated validators. The same driver takes a
 * call() that talks to the live server (test/schema/contract-driver.ts).
 */
import test from 'ava';
import { validateParams } from '../../src/rpc/params-error.js';
import { registerContractTests, type Call } from './contract-driver.js';

const offline: Call = async (command, params) => {
  const error = validateParams(command, params);
  return error === null ? { kind: 'ok' } : { kind: 'invalid-params', message: error.message, path: error.path };
};

registerContractTests(test, offline, { title: 'offline' });
