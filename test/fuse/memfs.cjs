// A tiny in-memory file system on kdfs-fuse, for test/fuse/binding.test.ts: one
// process per mount (a process holds one session), started by the test with an
// IPC channel. It reports every request to the test ({ ev: 'op', ... }) and obeys
// its commands (hold requests, queue notifications, unmount...); it exits when
// the session ends or the test goes away.
//
// Usage: node memfs.cjs MOUNTPOINT OPTIONS   (OPTIONS as for ll.mount: "-o...")
'use strict'

// KDFS_FUSE_BINDING: another build of the binding to test (one built with
// -fsanitize=address, say)
const ll = require(process.env.KDFS_FUSE_BINDING || 'kdfs-fuse')

const [mountPoint, options] = process.argv.slice(2)
const A = ll.args
const OP = Object.fromEntries(ll.OPS.map((name, i) => [name, i]))
const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFMT = 0o170000
const F_RDLCK = 0
const F_WRLCK = 1
const F_UNLCK = 2
const LOCK_SH = 1
const LOCK_EX = 2
const LOCK_NB = 4
const LOCK_UN = 8
const ENOENT = 2
const EINTR = 4
const EAGAIN = 11
const EEXIST = 17
const ENOTDIR = 20
const ENOTEMPTY = 39
const ENOSYS = 38
/** Long enough that the kernel asks again only when told to. */
const TIMEOUT_S = 3600

function send(message) {
  if (process.connected) process.send(message)
}

// ------------------------------------------------------------ inodes

let nextIno = 2
const inodes = new Map()

function now() {
  const ms = Date.now()
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 }
}

function makeInode(mode, uid, gid) {
  const t = now()
  const inode = {
    ino: mode === (S_IFDIR | 0o755) && inodes.size === 0 ? 1 : nextIno++,
    mode, nlink: (mode & S_IFMT) === S_IFDIR ? 2 : 1, uid, gid, data: Buffer.alloc(0),
    children: (mode & S_IFMT) === S_IFDIR ? new Map() : null, atime: t, mtime: t, ctime: t,
  }
  inodes.set(inode.ino, inode)
  return inode
}

makeInode(S_IFDIR | 0o755, 0, 0)

const attrWords = new Float64Array(15)
function attr(inode) {
  attrWords[0] = inode.ino
  attrWords[1] = inode.mode
  attrWords[2] = inode.nlink
  attrWords[3] = inode.uid
  attrWords[4] = inode.gid
  attrWords[5] = 0
  attrWords[6] = inode.children ? 4096 : inode.data.length
  attrWords[7] = 4096
  attrWords[8] = Math.ceil(attrWords[6] / 512)
  attrWords[9] = inode.atime.sec
  attrWords[10] = inode.atime.nsec
  attrWords[11] = inode.mtime.sec
  attrWords[12] = inode.mtime.nsec
  attrWords[13] = inode.ctime.sec
  attrWords[14] = inode.ctime.nsec
  return attrWords
}

function addEntry(parent, name, mode, uid, gid) {
  const dir = inodes.get(parent)
  if (!dir || !dir.children) return { err: ENOTDIR }
  if (dir.children.has(name)) return { err: EEXIST }
  const inode = makeInode(mode, uid, gid)
  dir.children.set(name, inode.ino)
  if (inode.children) dir.nlink++
  return { inode }
}

// ------------------------------------------------------------ open files

let nextFh = 1
const handles = new Map() // fh -> ino
/** Open files get FOPEN_DIRECT_IO (see the 'directIo' command). */
let directIo = false

// ------------------------------------------------------------ locks

// POSIX locks: ino -> [{ owner, type, start, end (Infinity: to EOF), pid }]
const posixLocks = new Map()
// flock locks: ino -> Map(owner -> LOCK_SH | LOCK_EX)
const flockLocks = new Map()
// requests waiting for a lock: { slot, retry() -> boolean (answered) }
let waiters = []

function overlaps(a, start, end) {
  return a.start <= end && start <= a.end
}

function posixConflict(ino, owner, type, start, end) {
  for (const l of posixLocks.get(ino) ?? []) {
    if (l.owner !== owner && overlaps(l, start, end) && (type === F_WRLCK || l.type === F_WRLCK)) return l
  }
  return null
}

/** Removes owner's locks from [start, end], splitting those that straddle it. */
function posixUnlock(ino, owner, start, end) {
  const kept = []
  for (const l of posixLocks.get(ino) ?? []) {
    if (l.owner !== owner || !overlaps(l, start, end)) {
      kept.push(l)
      continue
    }
    if (l.start < start) kept.push({ ...l, end: start - 1 })
    if (l.end > end) kept.push({ ...l, start: end + 1 })
  }
  posixLocks.set(ino, kept)
}

function flockConflict(ino, owner, op) {
  for (const [other, held] of flockLocks.get(ino) ?? []) {
    if (other !== owner && (op === LOCK_EX || held === LOCK_EX)) return true
  }
  return false
}

function retryWaiters() {
  const before = waiters
  waiters = []
  for (const w of before) if (!w.retry()) waiters.push(w)
}

// ------------------------------------------------------------ requests held on the test's command

// { op, name } rules: matching requests are held until 'release'
let holdRules = []
let held = []

function maybeHold(op, name, slot, answer) {
  const rule = holdRules.find((r) => r.op === op && (r.name === undefined || r.name === name))
  if (!rule) return false
  held.push({ op, name, slot, answer })
  send({ ev: 'held', op, name, slot })
  return true
}

// ------------------------------------------------------------ the handler

function reportOp(op, slot, s1, s2) {
  send({ ev: 'op', op: ll.OPS[op], slot, args: Array.from(A.subarray(0, 12)), s1, s2 })
}

function handler(op, slot, s1, s2, data) {
  reportOp(op, slot, s1, s2)
  const ino = A[4]
  switch (op) {
    case OP.init:
      send({ ev: 'ready', pid: process.pid })
      return
    case OP.exit:
      send({ ev: 'exit' })
      // MEMFS_NATURAL_EXIT: the process leaves by itself once the binding has
      // let go of the event loop (its thread joined, its handles closed)
      if (!process.env.MEMFS_NATURAL_EXIT) setImmediate(() => process.exit(0))
      return
    case OP.forget:
      return
    case OP.interrupt: {
      // a waiter or a held request: answered EINTR at once
      const waiting = waiters.find((w) => w.slot === slot)
      const holding = held.find((h) => h.slot === slot)
      waiters = waiters.filter((w) => w !== waiting)
      held = held.filter((h) => h !== holding)
      if (waiting || holding) ll.replyErr(slot, EINTR)
      return
    }
    case OP.lookup: {
      const answer = () => {
        const dir = inodes.get(ino)
        const child = dir?.children?.get(s1)
        if (child === undefined) ll.replyErr(slot, ENOENT)
        else ll.replyEntry(slot, attr(inodes.get(child)), TIMEOUT_S, TIMEOUT_S)
      }
      if (s1 === 'answer-twice') {
        ll.replyErr(slot, ENOENT)
        try {
          ll.replyErr(slot, ENOENT)
          send({ ev: 'twice', threw: false })
        } catch (err) {
          send({ ev: 'twice', threw: true, name: err.name, message: err.message })
        }
        return
      }
      if (!maybeHold('lookup', s1, slot, answer)) answer()
      return
    }
    case OP.getattr: {
      const inode = inodes.get(ino)
      if (!inode) ll.replyErr(slot, ENOENT)
      else ll.replyAttr(slot, attr(inode), TIMEOUT_S)
      return
    }
    case OP.setattr: {
      const inode = inodes.get(ino)
      if (!inode) return void ll.replyErr(slot, ENOENT)
      const valid = A[5]
      if (valid & 1) inode.mode = (inode.mode & S_IFMT) | (A[6] & 0o7777)
      if (valid & 2) inode.uid = A[7]
      if (valid & 4) inode.gid = A[8]
      if (valid & 8) {
        const data = Buffer.alloc(A[9])
        inode.data.copy(data, 0, 0, Math.min(A[9], inode.data.length))
        inode.data = data
      }
      if (valid & 16) inode.atime = { sec: A[10], nsec: A[11] }
      if (valid & 32) inode.mtime = { sec: A[12], nsec: A[13] }
      if (valid & (1 << 7)) inode.atime = now()
      if (valid & (1 << 8)) inode.mtime = now()
      inode.ctime = now()
      ll.replyAttr(slot, attr(inode), TIMEOUT_S)
      return
    }
    case OP.mkdir:
    case OP.mknod: {
      const mode = op === OP.mkdir ? S_IFDIR | (A[5] & 0o7777) : A[5]
      const { inode, err } = addEntry(ino, s1, mode, A[0], A[1])
      if (err) ll.replyErr(slot, err)
      else ll.replyEntry(slot, attr(inode), TIMEOUT_S, TIMEOUT_S)
      return
    }
    case OP.create: {
      const { inode, err } = addEntry(ino, s1, S_IFREG | (A[5] & 0o7777), A[0], A[1])
      if (err) return void ll.replyErr(slot, err)
      const fh = nextFh++
      handles.set(fh, inode.ino)
      ll.replyCreate(slot, attr(inode), TIMEOUT_S, TIMEOUT_S, fh, directIo ? 1 : 0)
      return
    }
    case OP.unlink:
    case OP.rmdir: {
      const dir = inodes.get(ino)
      const child = dir?.children?.get(s1)
      if (child === undefined) return void ll.replyErr(slot, ENOENT)
      const inode = inodes.get(child)
      if (op === OP.rmdir && inode.children.size > 0) return void ll.replyErr(slot, ENOTEMPTY)
      dir.children.delete(s1)
      inode.nlink = op === OP.rmdir ? 0 : inode.nlink - 1
      if (op === OP.rmdir) dir.nlink--
      ll.replyErr(slot, 0)
      return
    }
    case OP.open: {
      const fh = nextFh++
      handles.set(fh, ino)
      ll.replyOpen(slot, fh, directIo ? 1 : 0)
      return
    }
    case OP.opendir:
      ll.replyOpen(slot, 0, 0)
      return
    case OP.read: {
      const inode = inodes.get(ino)
      ll.replyBuf(slot, inode.data.subarray(A[7], A[7] + A[6]))
      return
    }
    case OP.write: {
      const inode = inodes.get(ino)
      const end = A[7] + data.length
      if (end > inode.data.length) {
        const grown = Buffer.alloc(end)
        inode.data.copy(grown)
        inode.data = grown
      }
      data.copy(inode.data, A[7])
      inode.mtime = inode.ctime = now()
      ll.replyWrite(slot, data.length)
      return
    }
    case OP.copy_file_range: {
      const from = inodes.get(A[4])
      const to = inodes.get(A[7])
      const piece = Buffer.from(from.data.subarray(A[6], A[6] + A[10]))
      const end = A[9] + piece.length
      if (end > to.data.length) {
        const grown = Buffer.alloc(end)
        to.data.copy(grown)
        to.data = grown
      }
      piece.copy(to.data, A[9])
      ll.replyWrite(slot, piece.length)
      return
    }
    case OP.flush:
      // close(2): the POSIX locks of the owner go
      posixUnlock(ino, s1, 0, Infinity)
      retryWaiters()
      ll.replyErr(slot, 0)
      return
    case OP.release:
      if (A[6] === 1) {
        flockLocks.get(ino)?.delete(s1)
        retryWaiters()
      }
      handles.delete(A[5])
      ll.replyErr(slot, 0)
      return
    case OP.readdir: {
      const dir = inodes.get(ino)
      const entries = [['.', ino], ['..', 1], ...dir.children].slice(A[7])
      ll.replyDir(slot, A[6], A[7], entries.map((e) => e[0]),
        Float64Array.from(entries, (e) => e[1]), Uint32Array.from(entries, (e) => inodes.get(e[1]).mode))
      return
    }
    case OP.getlk: {
      const end = A[8] < 0 ? Infinity : A[8]
      const l = posixConflict(ino, s1, A[6], A[7], end)
      if (l) ll.replyLock(slot, l.type, l.start, l.end === Infinity ? -1 : l.end, l.pid)
      else ll.replyLock(slot, F_UNLCK, 0, 0, 0)
      return
    }
    case OP.setlk: {
      const [type, start, end, pid, sleep] = [A[6], A[7], A[8] < 0 ? Infinity : A[8], A[9], A[10]]
      const attempt = () => {
        if (type === F_UNLCK) {
          posixUnlock(ino, s1, start, end)
          retryWaiters()
        } else {
          if (posixConflict(ino, s1, type, start, end)) return false
          posixUnlock(ino, s1, start, end)
          posixLocks.get(ino).push({ owner: s1, type, start, end, pid })
        }
        ll.replyErr(slot, 0)
        return true
      }
      if (!attempt()) {
        if (sleep) waiters.push({ slot, retry: attempt })
        else ll.replyErr(slot, EAGAIN)
      }
      return
    }
    case OP.flock: {
      const lockOp = A[6] & ~LOCK_NB
      const attempt = () => {
        if (!flockLocks.has(ino)) flockLocks.set(ino, new Map())
        if (lockOp === LOCK_UN) {
          flockLocks.get(ino).delete(s1)
          retryWaiters()
        } else {
          if (flockConflict(ino, s1, lockOp)) return false
          flockLocks.get(ino).set(s1, lockOp)
        }
        ll.replyErr(slot, 0)
        return true
      }
      if (!attempt()) {
        if (A[6] & LOCK_NB) ll.replyErr(slot, EAGAIN)
        else waiters.push({ slot, retry: attempt })
      }
      return
    }
    case OP.statfs:
      ll.replyStatfs(slot, Float64Array.of(4096, 4096, 1024, 1024, 1024, 1024, 1024, 1024, 0, 0, 255))
      return
    case OP.releasedir:
    case OP.fsync:
    case OP.fsyncdir:
      ll.replyErr(slot, 0)
      return
    default:
      ll.replyErr(slot, ENOSYS)
  }
}

// ------------------------------------------------------------ the test's commands

process.on('message', (m) => {
  switch (m.cmd) {
    case 'ping':
      send({ ev: 'pong', id: m.id })
      return
    case 'hold':
      holdRules.push({ op: m.op, name: m.name })
      send({ ev: 'holding', id: m.id })
      return
    case 'release': {
      const answering = held
      held = []
      holdRules = []
      for (const h of answering) h.answer()
      send({ ev: 'released', id: m.id, count: answering.length })
      return
    }
    case 'addFile': {
      const { inode, err } = addEntry(m.parent, m.name, S_IFREG | 0o644, 0, 0)
      send({ ev: 'added', id: m.id, ino: inode?.ino, err })
      return
    }
    case 'directIo':
      directIo = m.on
      send({ ev: 'directIo', id: m.id })
      return
    case 'notifyInvalEntry':
    case 'notifyInvalInode':
    case 'notifyDelete': {
      const done = (result) => send({ ev: 'notified', id: m.id, result })
      const queued = m.cmd === 'notifyInvalEntry' ? ll.notifyInvalEntry(m.parent, m.name, done)
        : m.cmd === 'notifyDelete' ? ll.notifyDelete(m.parent, m.child, m.name, done)
          : ll.notifyInvalInode(m.ino, m.offset, m.length, done)
      send({ ev: 'queued', id: m.id, queued })
      return
    }
    case 'notifyInvalAttrsNow':
      send({ ev: 'notifiedNow', id: m.id, result: ll.notifyInvalAttrsNow(m.ino) })
      return
    case 'flood': {
      // inval_entry count times, until the queue refuses one
      let queued = 0
      let refused = 0
      let done = 0
      const results = {}
      const counted = (result) => {
        results[result] = (results[result] ?? 0) + 1
        if (++done === queued) send({ ev: 'flooded', id: m.id, results })
      }
      for (let i = 0; i < m.count && refused === 0; i++) {
        const res = ll.notifyInvalEntry(m.parent, m.name, counted)
        if (res === 0) queued++
        else refused = res
      }
      send({ ev: 'flooding', id: m.id, queued, refused })
      return
    }
    case 'unmount':
      ll.unmount()
      send({ ev: 'unmounting', id: m.id })
      return
  }
})

// the test is gone (crashed): leave no mount behind
process.on('disconnect', () => {
  try {
    ll.unmount()
  } catch {}
  setTimeout(() => process.exit(1), 2000).unref()
})

ll.mount(mountPoint, options, handler)
// the session, not the channel to the test, keeps the process alive
if (process.env.MEMFS_NATURAL_EXIT) process.channel?.unref()
