'use strict';
// The program's side of kDFS's checkpoint protocol for Node programs, the same
// as sdk/c/kdfs_checkpoint.c (docs/checkpoint.md). Synchronous on purpose: it
// runs in the user's program, at a point the program chose, with its state
// consistent; nothing else of the program may run in between.
const fs = require('node:fs');
const path = require('node:path');

const { O_WRONLY, O_CREAT, O_TRUNC, O_NONBLOCK } = fs.constants;

let app = null; // $KDFS_CKPT_APP once registered
let rank = 0;
let requested = false;
let producer = null;
let scheduled = false;

// Decimal digits only: a typo in a variable must not quietly become rank 0.
function decimal(name, value) {
  if (value === undefined || !/^[0-9]+$/.test(value)) throw new Error(`checkpoint: ${name}=${value ?? ''} is not a number`);
  return Number(value);
}

/** { app, rank } under `kdfs run`, null outside it. */
function env() {
  const dir = process.env.KDFS_CKPT_APP;
  if (!dir) return null;
  const r = process.env.KDFS_CKPT_RANK;
  return { app: dir, rank: r === undefined ? 0 : decimal('KDFS_CKPT_RANK', r) };
}

// A Node signal listener runs from the event loop, not in the signal handler:
// a program that never yields never sees the flag set.
function onSignal() {
  requested = true;
  if (!producer || scheduled) return;
  scheduled = true;
  process.nextTick(() => {
    scheduled = false;
    if (!requested) return; // the program saved by itself meanwhile
    let state;
    try {
      state = producer();
    } catch (err) {
      state = err instanceof Error ? err : new Error(String(err)); // answered `fail`
    }
    try {
      save(state);
    } catch (err) {
      process.emitWarning(`checkpoint: ${err.message}`); // that checkpoint fails, the program goes on
    }
  });
}

function init() {
  const e = env();
  if (!e) return false;
  const node = decimal('KDFS_CKPT_NODE', process.env.KDFS_CKPT_NODE);
  // the listener first: `checkpoint` signals us as soon as procs/ names us
  if (!process.listeners('SIGUSR2').includes(onSignal)) process.on('SIGUSR2', onSignal);
  try {
    fs.mkdirSync(path.join(e.app, 'procs'), 0o700);
  } catch (err) {
    if (err.code !== 'EEXIST') throw err;
  }
  fs.closeSync(fs.openSync(path.join(e.app, 'procs', `${node}.${process.pid}`), 'a', 0o600));
  app = e.app;
  rank = e.rank;
  return true;
}

function pending() {
  return app !== null && requested;
}

// close is checked: on a network file system it is where a write can fail.
function writeState(file, state) {
  const fd = fs.openSync(file, O_WRONLY | O_CREAT | O_TRUNC, 0o600);
  try {
    for (let off = 0; off < state.length; ) off += fs.writeSync(fd, state, off, state.length - off);
    fs.fsyncSync(fd);
  } catch (err) {
    try { fs.closeSync(fd); } catch { /* the first error says more */ }
    throw err;
  }
  fs.closeSync(fd);
}

const nap = new Int32Array(new SharedArrayBuffer(4));

// O_NONBLOCK: with nobody reading (a `checkpoint` that gave up) open fails with
// ENXIO instead of blocking forever. Node ignores SIGPIPE: a reader leaving
// mid-write is an EPIPE. The line is shorter than PIPE_BUF, so it goes whole or
// not at all (EAGAIN: the pipe is full, wait for the reader).
function tell(fifo, line) {
  const fd = fs.openSync(fifo, O_WRONLY | O_NONBLOCK);
  try {
    for (;;) {
      try {
        fs.writeSync(fd, line);
        return;
      } catch (err) {
        if (err.code !== 'EAGAIN') throw err;
        Atomics.wait(nap, 0, 0, 5);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

const oneLine = (err) => String(err && err.message ? err.message : err).replace(/\s+/g, ' ').slice(0, 400);

// Answers the checkpoint SN if it waits for us; throws if it could not say `done`.
function answer(sn, state) {
  const dir = path.join(app, `.v${sn}`);
  const pid = process.pid;
  const done = path.join(dir, `done_${pid}`);
  try {
    fs.statSync(done);
    return; // answered already
  } catch (err) {
    if (err.code === 'ENOTDIR') return; // a file named .v<SN>: not a checkpoint
    if (err.code !== 'ENOENT') throw err;
  }
  let request;
  try {
    request = fs.readFileSync(path.join(dir, 'request'), 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return; // abandoned, or not a checkpoint
    throw err;
  }
  const nl = request.indexOf('\n');
  if (nl < 0) return; // still being written: its signal comes once it is whole
  const line = request.slice(0, nl);
  if (!line.startsWith('fifo=') || line.length === 5) throw new Error(`checkpoint: ${dir}/request: not fifo=<path>`);
  const name = `task_mm_${pid}_v${sn}.bin`;
  let error = null;
  let msg;
  try {
    if (state instanceof Error) throw state;
    writeState(path.join(dir, name), state);
    msg = `done ${pid} ${rank} ${state.length}\n`;
  } catch (err) {
    error = err;
    msg = `fail ${pid} ${rank} write ${name}: ${oneLine(err)}\n`;
  }
  // done_<PID> even after a failure: SN is abandoned, never answered twice
  try {
    fs.closeSync(fs.openSync(done, 'a', 0o600));
  } catch (err) {
    if (!error) {
      error = err;
      msg = `fail ${pid} ${rank} create done_${pid}: ${oneLine(err)}\n`;
    }
  }
  tell(line.slice(5), msg);
  if (error) throw error;
}

function save(state) {
  if (app === null) return;
  requested = false; // before the scan: a signal arriving during it is seen next time
  if (!(state instanceof Error) && !Buffer.isBuffer(state)) state = new TypeError('checkpoint: the state must be a Buffer');
  const sns = [];
  for (const name of fs.readdirSync(app)) {
    const m = /^\.v([1-9][0-9]*)$/.exec(name); // as `checkpoint` names it
    if (m) sns.push(Number(m[1]));
  }
  let first = null;
  for (const sn of sns.sort((a, b) => a - b)) {
    try {
      answer(sn, state);
    } catch (err) {
      first ??= err; // the later checkpoints are answered all the same
    }
  }
  if (first) throw first;
}

function restore() {
  const e = env();
  if (!e) return null;
  const s = process.env.KDFS_CKPT_RESTART_SN;
  if (s === undefined || s === '') return null;
  const sn = decimal('KDFS_CKPT_RESTART_SN', s);
  for (const name of fs.readdirSync(e.app)) {
    const m = /^task_([0-9]+)_v([0-9]+)\.bin$/.exec(name);
    if (!m || m[2] !== String(sn)) continue;
    const r = /^rank=([0-9]+)$/m.exec(fs.readFileSync(path.join(e.app, name), 'utf8'));
    // a missing task_mm file throws ENOENT: never an empty state
    if (r && Number(r[1]) === e.rank) return fs.readFileSync(path.join(e.app, `task_mm_${m[1]}_v${sn}.bin`));
  }
  throw Object.assign(new Error(`checkpoint: no task_<PID>_v${sn}.bin of rank ${e.rank} in ${e.app}`), { code: 'ENOENT' });
}

function onCheckpoint(fn) {
  producer = fn;
  return app !== null || init();
}

module.exports = { init, pending, save, restore, onCheckpoint };
