"""Where rate-limit buckets can live: one row per workspace in PostgreSQL, updated by every
request, against a bucket in the process's memory (what mlgate does, gateway/security/limits.py).

Run by hand (not collected by pytest)::

    python tests/perf/rate_limit_buckets.py [--pg-dsn DSN] [--clients 32] [--duration 3]

Prints, for PostgreSQL, the updates a second and their p50/p99 with ``--clients`` concurrent
clients on one workspace's row (a team's requests all take that row's lock), and SELECT 1 as
the round trip's floor; for memory, the microseconds one charge costs.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg

from auth.rate_limits import Quota, charge, full

_UPDATE = ("UPDATE rl_probe SET level = least(1e12, level + (extract(epoch from "
           "clock_timestamp()) - at) * 100) - 1, at = extract(epoch from clock_timestamp())"
           " WHERE k = $1 RETURNING level")


async def _bench(pool: asyncpg.Pool, sql: str, args: tuple[object, ...], clients: int,
                 duration: float) -> tuple[float, float, float]:
    done = 0
    latencies: list[float] = []
    end = time.monotonic() + duration

    async def client() -> None:
        nonlocal done
        while time.monotonic() < end:
            started = time.monotonic()
            async with pool.acquire() as conn:
                await conn.fetchval(sql, *args)
            latencies.append(time.monotonic() - started)
            done += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    latencies.sort()
    return (done / duration, latencies[len(latencies) // 2] * 1000,
            latencies[int(len(latencies) * 0.99)] * 1000)


async def main(dsn: str, clients: int, duration: float) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=8, max_size=8)
    try:
        async with pool.acquire() as conn:
            await conn.execute("DROP TABLE IF EXISTS rl_probe; CREATE TABLE rl_probe (k text "
                               "PRIMARY KEY, level float8, at float8); INSERT INTO rl_probe "
                               "VALUES ('ws', 1e12, 0)")
        for label, sql, args in (("SELECT 1", "SELECT 1", ()),
                                 ("bucket row UPDATE", _UPDATE, ("ws",))):
            rate, p50, p99 = await _bench(pool, sql, args, clients, duration)
            print(f"postgres {label:18} {rate:8.0f}/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
        async with pool.acquire() as conn:
            await conn.execute("DROP TABLE rl_probe")
    finally:
        await pool.close()
    quota = Quota(1e9, 1e9)
    bucket = full(quota, time.monotonic())
    n = 200_000
    started = time.perf_counter()
    for _ in range(n):
        charge(bucket, quota, 1, time.monotonic())
    took = time.perf_counter() - started
    print(f"memory   one charge          {took / n * 1e6:8.2f} us")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=3.0)
    a = ap.parse_args()
    asyncio.run(main(a.pg_dsn, a.clients, a.duration))
