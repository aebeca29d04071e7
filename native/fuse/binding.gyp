{
  "targets": [{
    "target_name": "kdfs_fuse",
    "sources": [
      "src/session.c",
      "src/requests.c",
      "src/replies.c",
      "src/notify.c",
      "src/values.c",
      "src/names.c"
    ],
    "include_dirs": [
      "<!@(pkg-config --cflags-only-I fuse3 | sed s/-I//g)"
    ],
    "libraries": [
      "<!@(pkg-config --libs fuse3)"
    ],
    "cflags": [ "-g", "-O2" ],
    # C only, and here rather than in cflags: node's common.gypi strips -Werror
    # from cflags. -Wunused-parameter undoes its -Wno-unused-parameter.
    "cflags_c": [
      "-std=gnu11",
      "-Wall", "-Wextra", "-Werror",
      "-Wunused-parameter",
      "-Wshadow", "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wformat=2",
      "-Wpointer-arith", "-Wcast-qual", "-Wundef", "-Wvla"
    ]
  }]
}
