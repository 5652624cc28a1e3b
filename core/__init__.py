"""Infrastructure (floor 1): what every other layer needs, importing nothing of ours.

Settings (`settings`), the engine and its two transactions (`db`), the threads database calls
run on (`db_threads`), the rules of heavy reads: their budget and time limit (`heavy_reads`),
the per-holder caps on what runs at once (`concurrency`),
PostgreSQL's LISTEN/NOTIFY that wakes waiters across processes (`notifications`), the hot reads
compiled once and run on psycopg's pool or SQLite's connection (`compiled_reads`), the write
path's statements compiled once and run on their transaction's connection (`prepared`), time and id
helpers (`timestamps`, `ids`), retries (`retry`), log records and the request id on them
(`logs`), the process's Prometheus metrics (`metrics`), outbound HTTP for webhooks
(`outbound`), secrets sealed at rest (`sealing`), the object stores that keep artifacts' bytes (`stores`), and
the files the package ships (`resources`). Code here knows nothing of HTTP or of the tables.
"""
