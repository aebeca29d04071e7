#!/usr/bin/env bash
# npm run setup: installs whatever kDFS needs that is missing, and nothing else.
# A second run finds everything in place and changes nothing.
#  1. Debian packages: libfuse3 (its -dev and a C toolchain to build the FUSE
#     binding), fuse for fusermount, attr for setfattr/getfattr, fio for the
#     benchmark, sqlite3 for the test of SQLite used from two nodes, etcd-server
#     for metadata in etcd (kdfs up --meta etcd; the service Debian starts with
#     it is stopped and disabled when this installs it: kdfs runs its own).
#  2. npm dependencies, exactly as package-lock.json pins them.
#  3. The native modules, when their sources changed: the FUSE binding
#     (native/fuse, which npm links as node_modules/kdfs-fuse) built against the
#     system libfuse3, and kdfs-sys (native/sys: fallocate for the agents).
#  4. The TypeScript build (dist/).
#  5. /sbin/mount.kdfs (for `mount -t kdfs`), mkfs.kdfs, kdfs, checkpoint and restart on PATH.
#  6. The checkpoint SDK and examples/count (make).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
say() { printf 'setup: %s\n' "$*" >&2; }

# 1. Debian packages
need=()
for pkg in libfuse3-3 libfuse3-dev fuse pkg-config make g++ python3 attr fio sqlite3 etcd-server; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
  if [[ " ${need[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
fi
[ -c /dev/fuse ] || { say "/dev/fuse is missing: load the fuse module (modprobe fuse)"; exit 1; }

# 2. npm dependencies, reinstalled only when package-lock.json changed
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.kdfs-lock-sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$lock_sum" > "$stamp"
fi

# 3. the native modules, each rebuilt only when its sources (or libfuse3) changed
build_native() { # build_native DIR NAME WHAT [EXTRA-TO-HASH]
  local dir=$1 module=$2 what=$3 sum
  sum=$( { sha256sum "$dir/binding.gyp" "$dir"/src/*; echo "${4:-}"; } | sha256sum | cut -d' ' -f1)
  if [ ! -f "$dir/build/.kdfs-sources-sha256" ] || [ "$(cat "$dir/build/.kdfs-sources-sha256")" != "$sum" ] || [ ! -f "$dir/build/Release/$module.node" ]; then
    say "building $what"
    local gyp
    gyp="$(npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js"
    (cd "$dir" && node "$gyp" rebuild --nodedir=/usr --loglevel=error >/dev/null)
    echo "$sum" > "$dir/build/.kdfs-sources-sha256"
  fi
}
build_native native/fuse kdfs_fuse "the FUSE binding" "$(pkg-config --modversion fuse3)"
build_native native/sys kdfs_sys "kdfs-sys"

# 4. TypeScript build (incremental: a no-op when nothing changed)
npx --no-install tsc -p tsconfig.json

# 5. commands on PATH and the mount helper
link() { # link TARGET NAME: point NAME at TARGET unless it already does
  if [ "$(readlink "$2" 2>/dev/null)" != "$1" ]; then
    ln -sfn "$1" "$2"
    say "installed $2 -> $1"
  fi
}
link "$top/cli/mount.kdfs" /sbin/mount.kdfs
link "$top/cli/mkfs.kdfs" /usr/local/bin/mkfs.kdfs
link "$top/cli/kdfs" /usr/local/bin/kdfs
link "$top/cli/checkpoint" /usr/local/bin/checkpoint
link "$top/cli/restart" /usr/local/bin/restart

# 6. the checkpoint SDK and examples/count (make: a no-op when nothing changed)
make -s -C "$top/examples"
