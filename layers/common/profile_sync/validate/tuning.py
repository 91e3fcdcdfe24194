"""Sizes the engine works in. Module attributes read at call time, so tests can shrink them to put
chunk boundaries, spills and splits everywhere."""

CHUNK_SIZE = 2 * 1024 * 1024  # bytes read at a time; larger chunks are no faster and cost peak memory
READ_AHEAD = True  # read the next chunk in a thread (gzip and S3 reads release the GIL)
MIN_RECORD_LIMIT = 1024 * 1024  # a line or quoted record longer than this is never held whole
# Duplicate counter: partitions per level, hashes buffered before a spill, hashes counted in memory at once.
DUP_PARTITION_BITS = 4  # 16 partition files (each one costs an open: about 0.4 ms on a slow disk)
DUP_BUFFER = 1 << 18  # 2 MB of buffered hashes
DUP_SET_MAX = 1 << 20  # 1,048,576 hashes sorted at once: 8 MB, at the end, once the chunks are freed
FAST_PATH = True  # False: every row takes the per-record path (the reference the tests compare to)
