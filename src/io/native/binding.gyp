{
  "targets": [
    {
      "target_name": "qzoned_native",
      "sources": ["addon.c", "confined.c", "fallocate.c", "malloc.c", "ofd-lock.c", "seek.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
