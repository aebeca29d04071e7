#!/usr/bin/env bash
# npm run setup: installs whatever kDFS needs that is missing, and nothing else.
# A second run finds everything in place and changes nothing.
#  1. Debian packages: libfuse3 (its -dev and a C toolchain to build the FUSE
#     binding), fuse for fusermount, attr for setfattr/getfattr, fio for the
#     benchmark.
#  2. npm dependencies, exactly as package-lock.json pins them.
#  3. patches/ applied to node_modules (patch-package), and the low-level FUSE
#     binding it adds to fuse-native built against the system libfuse3.
#  4. The TypeScript build (dist/).
#  5. /sbin/mount.kdfs (for `mount -t kdfs`), mkfs.kdfs and kdfs on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
say() { printf 'setup: %s\n' "$*" >&2; }

# 1. Debian packages
need=()
for pkg in libfuse3-3 libfuse3-dev fuse pkg-config make g++ python3 attr fio; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
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

# 3. patches, then the low-level FUSE binding built against the system libfuse3
patch_sum=$(cat patches/*.patch | sha256sum | cut -d' ' -f1)
pstamp=node_modules/.kdfs-patches-sha256
binding=node_modules/fuse-native/lowlevel/build/Release/lowlevel.node
if [ ! -f "$pstamp" ] || [ "$(cat "$pstamp")" != "$patch_sum" ] || [ ! -f "$binding" ]; then
  say "applying patches and building the FUSE binding"
  npx --no-install patch-package --error-on-fail >/dev/null
  gyp="$(npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js"
  (cd node_modules/fuse-native/lowlevel && node "$gyp" rebuild --nodedir=/usr --loglevel=error >/dev/null)
  echo "$patch_sum" > "$pstamp"
fi

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
