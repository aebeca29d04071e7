{
  "targets": [{
    "target_name": "kdfs_sys",
    "sources": [
      "src/module.c",
      "src/fallocate.c"
    ],
    "cflags": [ "-g", "-O2" ],
    # as native/fuse: C only, and here rather than in cflags (node's common.gypi strips -Werror there)
    "cflags_c": [
      "-std=gnu11",
      "-Wall", "-Wextra", "-Werror",
      "-Wunused-parameter",
      "-Wshadow", "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wformat=2",
      "-Wpointer-arith", "-Wcast-qual", "-Wundef", "-Wvla"
    ]
  }]
}
