{
  "targets": [
    {
      "target_name": "qzoned_native",
      "sources": ["addon.c", "fallocate.c", "malloc.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
