// Helpers for POSIX checks: errno assertions, and running operations as another user.
import { spawnSync } from 'node:child_process';
import { expect } from 'vitest';
import { FsError, errnoName } from '../../src/common/errno.js';

/** Asserts that fn fails with the given errno code ('ENOENT', ...). */
export function expectErrno(fn: () => unknown, code: string): void {
  let error: NodeJS.ErrnoException | null = null;
  try {
    fn();
  } catch (err) {
    error = err as NodeJS.ErrnoException;
  }
  expect(error?.code ?? 'no error').toBe(code);
}

/** 'ok', or the errno name a call of kDFS's own code failed with. */
export async function errnoOf(work: Promise<unknown>): Promise<string> {
  try {
    await work;
    return 'ok';
  } catch (err) {
    return err instanceof FsError ? errnoName(err.errno) : String(err);
  }
}

export const NOBODY = { uid: 65534, gid: 65534 };

/** Runs `body` (JavaScript, with `fs` in scope, returning a value) as user uid:gid in a
 *  separate process; returns its value, or the errno code it failed with. */
export function asUser(user: { uid: number; gid: number }, body: string): unknown {
  const script = `const fs = require('fs');
try { const value = (() => { ${body} })(); process.stdout.write(JSON.stringify({ value: value === undefined ? 'ok' : value })); }
catch (err) { process.stdout.write(JSON.stringify({ value: err.code || String(err) })); }`;
  const result = spawnSync(process.execPath, ['-e', script], { uid: user.uid, gid: user.gid, encoding: 'utf8', cwd: '/' });
  if (result.status !== 0) throw new Error(`as uid ${user.uid}: ${result.stderr}`);
  return (JSON.parse(result.stdout) as { value: unknown }).value;
}

/** Runs a python3 snippet (os imported) and returns its stdout; for calls Node lacks (xattr flags). */
export function python(code: string): { status: number; stdout: string; stderr: string } {
  const result = spawnSync('python3', ['-c', `import os, sys\n${code}`], { encoding: 'utf8' });
  return { status: result.status ?? 1, stdout: result.stdout.trim(), stderr: result.stderr.trim() };
}
