{
  "targets": [
    {
      "target_name": "qzoned_native",
      "sources": ["fallocate.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
