"""The baseline: the bare openai SDK loop, in a process of its own.

    python -m bench.sdk_loop --base-url URL --model M --n N --spread S --first-id K

Reads N streams with the official SDK exactly as its README shows (`AsyncOpenAI`, its
default httpx2 transport, `async for chunk in stream` over typed chunks), no web server,
no database, no socket. Each stream starts `spread * i / N` seconds in and names itself
`bench-<first-id + i>` to the benchmark upstream. One warm-up stream first (imports, the
first connection), as the app is warmed before it is measured.

Prints one JSON object: per stream the monotonic times it was started and each token
marker was first seen (on Linux one clock for every process: the benchmark subtracts the
upstream's send times), the chunk count and this process's CPU seconds for the level.
The benchmark pins this process to the app's core, so both get the same CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from typing import Any

from openai import AsyncOpenAI

TOKEN = re.compile(r"zq(\d+)")


async def level(base_url: str, model: str, n: int, spread: float, first_id: int) -> dict[str, Any]:
    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    streams: dict[str, dict[str, Any]] = {}
    chunks = 0

    async def one(stream_id: str, *, delay: float = 0.0, model: str = model) -> None:
        nonlocal chunks
        await asyncio.sleep(delay)
        record: dict[str, Any] = {"sent_at": time.monotonic(), "seen": {}}
        streams[stream_id] = record
        seen = record["seen"]
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"bench-{stream_id}"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            chunks += 1
            if chunk.choices and chunk.choices[0].delta.content:
                at = time.monotonic()
                for match in TOKEN.finditer(chunk.choices[0].delta.content):
                    seen.setdefault(int(match.group(1)), at)

    await one(str(first_id - 1), model="bench-1000x20")
    streams.clear()
    chunks = 0
    cpu = time.process_time()
    await asyncio.gather(*(one(str(first_id + i), delay=spread * i / n) for i in range(n)))
    cpu = time.process_time() - cpu
    await client.close()
    return {"streams": streams, "chunks": chunks, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--spread", type=float, default=0.0)
    parser.add_argument("--first-id", type=int, required=True)
    args = parser.parse_args()
    result = asyncio.run(level(args.base_url, args.model, args.n, args.spread, args.first_id))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
