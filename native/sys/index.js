// kdfs-sys: system calls kDFS's agents need that Node's fs module lacks (src/
// documents each). Built by kDFS's npm run setup (node-gyp).
'use strict'

const { constants } = require('node:os')
const binding = require('./build/Release/kdfs_sys.node')

const codes = Object.fromEntries(Object.entries(constants.errno).map(([code, n]) => [n, code]))

/** An error as node:fs makes them: code (ENOSPC...), errno (negative), syscall. */
function sysError (errno, syscall) {
  const code = codes[errno] || 'EIO'
  return Object.assign(new Error(`${code}: ${syscall} failed`), { code, errno: -errno, syscall })
}

module.exports = {
  FALLOC_FL_KEEP_SIZE: binding.FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE: binding.FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE: binding.FALLOC_FL_ZERO_RANGE,
  /** fallocate(2) on an open descriptor, in the thread pool. */
  fallocate (fd, mode, offset, length) {
    let settle
    const done = new Promise((resolve, reject) => {
      settle = (errno) => (errno === 0 ? resolve() : reject(sysError(errno, 'fallocate')))
    })
    // called outside the promise: bad arguments throw at once, as declared
    binding.fallocate(fd, mode, offset, length, (errno) => settle(errno))
    return done
  }
}
