#!/usr/bin/env python3
"""A model of the state's documents table under a 1M-entry listing, to size the next schema change.

Not the host: Python's sqlite3 inserting rows shaped like ours (md5 document ids, ~850-byte JSON,
a path index fed in path order as the emulator lists) in transactions of 16,000 upserts, with the
store's pragmas (WAL, synchronous=FULL, 8 MiB cache, checkpoint every 64 MiB). It compares what the
two indexes are keyed by:

  text    (datasource_id TEXT, doc_id TEXT): today's primary key, both 32 hex characters
  dstext  (ds INTEGER, doc_id TEXT): the datasource as a small integer
  blob    (ds INTEGER, doc_key BLOB): the md5 id as its 16 bytes as well

Usage: python3 bench/index_key_model.py [entries] (default 1,000,000; ~2 minutes per variant).
Prints process CPU and wall seconds per variant. Python's per-row cost is the same in each.
"""
import hashlib
import os
import sqlite3
import sys
import tempfile
import time

GROUP = 16_000
JSON = "x" * 850


def run(variant: str, n: int, directory: str) -> None:
    path = os.path.join(directory, f"{variant}.sqlite")
    c = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "cache_size=-8192",
                   "wal_autocheckpoint=16384", "journal_size_limit=67108864"):
        c.execute(f"PRAGMA {pragma}")
    ds = hashlib.md5(b"ds").hexdigest()
    cols = "path_lower TEXT NOT NULL, rev TEXT, generation INTEGER NOT NULL, json TEXT NOT NULL"
    if variant == "text":
        c.execute(f"CREATE TABLE documents (datasource_id TEXT NOT NULL, doc_id TEXT NOT NULL, {cols},"
                  " PRIMARY KEY (datasource_id, doc_id))")
        c.execute("CREATE INDEX by_path ON documents(datasource_id, path_lower)")
        sql = ("INSERT INTO documents VALUES (?,?,?,?,?,?)"
               " ON CONFLICT(datasource_id, doc_id) DO UPDATE SET json = excluded.json")
    elif variant == "dstext":
        c.execute(f"CREATE TABLE documents (ds INTEGER NOT NULL, datasource_id TEXT NOT NULL,"
                  f" doc_id TEXT NOT NULL, {cols})")
        c.execute("CREATE UNIQUE INDEX documents_key ON documents(ds, doc_id)")
        c.execute("CREATE INDEX by_path ON documents(ds, path_lower)")
        sql = ("INSERT INTO documents VALUES (1,?,?,?,?,?,?)"
               " ON CONFLICT(ds, doc_id) DO UPDATE SET json = excluded.json")
    else:
        c.execute(f"CREATE TABLE documents (ds INTEGER NOT NULL, doc_key BLOB NOT NULL,"
                  f" datasource_id TEXT NOT NULL, doc_id TEXT NOT NULL, {cols})")
        c.execute("CREATE UNIQUE INDEX documents_key ON documents(ds, doc_key)")
        c.execute("CREATE INDEX by_path ON documents(ds, path_lower)")
        sql = ("INSERT INTO documents VALUES (1,?,?,?,?,?,?,?)"
               " ON CONFLICT(ds, doc_key) DO UPDATE SET json = excluded.json")
    cpu0, wall0 = time.process_time(), time.time()
    for start in range(0, n, GROUP):
        rows = []
        for i in range(start, min(n, start + GROUP)):
            doc_id = hashlib.md5(f"{ds}_id:{i}".encode()).hexdigest()
            path_lower = "/folder %06d/file %08d.txt" % (i // 1000, i)
            row = (ds, doc_id, path_lower, "rev", 1, JSON)
            rows.append((bytes.fromhex(doc_id),) + row if variant == "blob" else row)
        c.execute("BEGIN")
        c.executemany(sql, rows)
        c.execute("COMMIT")
    cpu, wall = time.process_time() - cpu0, time.time() - wall0
    size = os.path.getsize(path) >> 20
    print(f"{variant:7} {n} entries: process CPU {cpu:.1f} s, wall {wall:.1f} s, file {size} MiB", flush=True)
    c.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as directory:
        for variant in ("text", "dstext", "blob"):
            run(variant, n, directory)


if __name__ == "__main__":
    main()
