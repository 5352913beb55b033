"""A team flooding log-batch at full speed: ``python flood.py URL TOKEN WORKSPACE RUN_ID
SECONDS CLIENTS ROWS``. Each client sends its next batch as soon as the last is answered,
429 or not (ignoring Retry-After: the worst case). Prints one JSON line of counts, and the
first 429's body and headers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import aiohttp


async def main(url: str, token: str, workspace: str, run_id: str, seconds: float,
               clients: int, rows: int) -> dict[str, Any]:
    counts = {"ok": 0, "limited": 0, "other": 0}
    refusal: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": workspace}
    end = time.monotonic() + seconds
    step = 0

    async def client(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal step
        while time.monotonic() < end:
            step += 1
            body = {"run_id": run_id, "metrics": [
                {"key": f"m{i}", "value": float(i), "timestamp": 1, "step": step}
                for i in range(rows)]}
            async with session.post(f"{url}/api/2.0/mlflow/runs/log-batch", json=body,
                                    headers=headers) as resp:
                answer = await resp.read()
                if resp.status == 200:
                    counts["ok"] += 1
                elif resp.status == 429:
                    counts["limited"] += 1
                    if not refusal:
                        refusal.update(body=json.loads(answer), headers={
                            k: v for k, v in resp.headers.items()
                            if k.lower().startswith(("retry-after", "ratelimit-"))})
                else:
                    counts["other"] += 1

    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        await asyncio.gather(*(client(session, n) for n in range(clients)))
        took = time.monotonic() - started
    return {**counts, "seconds": took, "rows": rows, "refusal": refusal}


if __name__ == "__main__":
    # The flood's own CPU must not stand in for the server's: on a shared test machine the
    # server and team B's client are served first (in production A runs elsewhere).
    os.nice(10)
    url, token, workspace, run_id = sys.argv[1:5]
    seconds, clients, rows = float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    print(json.dumps(asyncio.run(main(url, token, workspace, run_id, seconds, clients, rows))))
