"""What the README says about llama-cpp-python, checked against the real server.

    python -m bench.local_server --llama-python /path/to/venv/bin/python

The venv holds `llama-cpp-python[server]` (built from its sdist on PyPI) and `gguf`. No
model is downloaded: a tiny llama with random weights is written here with gguf-py, around
the tokenizer llama-cpp-python's own sdist ships (vendor/llama.cpp/models/
ggml-vocab-llama-spm.gguf): its words are nonsense, its server is the real one. Then:

1. by default (`interrupt_requests`), a second request ends the stream being written;
2. it answers one request at a time (with `--interrupt_requests False`, the second
   request's first chunk comes only after the first stream ends);
3. it sends no usage in a stream, even with `stream_options.include_usage`;
4. chatsite with `CHATSITE_UPSTREAM_CONCURRENCY=1` in front of the default server: two
   users' answers at once both finish whole, and the first conversation's title request
   never cuts an answer short.

Prints one line per check (PASS or FAIL) and exits non-zero on a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.streams import free_port
from tests.live import ROOT, LiveSite, SiteClient

MAKE_MODEL = r"""
import sys
import numpy as np
import gguf

vocab_path, out_path = sys.argv[1], sys.argv[2]
reader = gguf.GGUFReader(vocab_path)

def strings(name):
    field = reader.fields[name]
    return [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]

def values(name):
    field = reader.fields[name]
    return [field.parts[i][0].item() for i in field.data]

def scalar(name):
    field = reader.fields[name]
    return field.parts[field.data[0]][0].item()

tokens = strings("tokenizer.ggml.tokens")
n_vocab, n_embd, n_ff, n_layer, n_head = len(tokens), 64, 128, 2, 4
writer = gguf.GGUFWriter(out_path, "llama")
writer.add_name("chatsite-tiny-random-llama")
writer.add_context_length(1024)
writer.add_embedding_length(n_embd)
writer.add_block_count(n_layer)
writer.add_feed_forward_length(n_ff)
writer.add_head_count(n_head)
writer.add_head_count_kv(n_head)
writer.add_layer_norm_rms_eps(1e-5)
writer.add_rope_dimension_count(n_embd // n_head)
writer.add_tokenizer_model("llama")
writer.add_token_list(tokens)
writer.add_token_scores(values("tokenizer.ggml.scores"))
writer.add_token_types(values("tokenizer.ggml.token_type"))
writer.add_bos_token_id(scalar("tokenizer.ggml.bos_token_id"))
writer.add_eos_token_id(scalar("tokenizer.ggml.eos_token_id"))
writer.add_unk_token_id(scalar("tokenizer.ggml.unknown_token_id"))
rng = np.random.default_rng(7)

def weights(*shape):
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)

writer.add_tensor("token_embd.weight", weights(n_vocab, n_embd))
writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
writer.add_tensor("output.weight", weights(n_vocab, n_embd))
for i in range(n_layer):
    writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"blk.{i}.{name}.weight", weights(n_embd, n_embd))
    writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor(f"blk.{i}.ffn_gate.weight", weights(n_ff, n_embd))
    writer.add_tensor(f"blk.{i}.ffn_up.weight", weights(n_ff, n_embd))
    writer.add_tensor(f"blk.{i}.ffn_down.weight", weights(n_embd, n_ff))
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()
print("ok")
"""


def make_model(python: str, vocab: Path, out: Path) -> None:
    subprocess.run([python, "-c", MAKE_MODEL, str(vocab), str(out)], check=True)


class Server:
    def __init__(self, python: str, model: Path, *extra: str, log: Path) -> None:
        self.log = open(log, "ab")  # noqa: SIM115 - the server's output, for a post-mortem
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.process = subprocess.Popen(
            [python, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", "256", "--model_alias", "tiny", *extra],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(self.base + "/models") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not start")
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:  # uvicorn waits for a generation to end
            self.process.kill()
            self.process.wait()
        self.log.close()


async def stream(
    session: aiohttp.ClientSession,
    base: str,
    tokens: int,
    progress: list[float] | None = None,
    *,
    usage: bool = False,
) -> dict[str, Any]:
    """One streamed completion: its chunks' arrival times, text, usage, how it ended."""
    body: dict[str, Any] = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "stream": True,
        "max_tokens": tokens,
    }
    if usage:
        body["stream_options"] = {"include_usage": True}
    started = time.monotonic()
    times: list[float] = [] if progress is None else progress
    pieces: list[str] = []
    result: dict[str, Any] = {"usage": None, "finish": None, "done": False}
    async with session.post(base + "/chat/completions", json=body) as response:
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                result["done"] = True
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                result["usage"] = chunk["usage"]
            for choice in chunk.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    times.append(time.monotonic() - started)
                    pieces.append(choice["delta"]["content"])
                if choice.get("finish_reason"):
                    result["finish"] = choice["finish_reason"]
    result.update(times=times, text="".join(pieces), ended=time.monotonic() - started)
    return result


async def stream_under_way(
    session: aiohttp.ClientSession, base: str, tokens: int
) -> asyncio.Task[dict[str, Any]]:
    """A stream of `tokens`, returned once its first 20 tokens have arrived (or it ended)."""
    progress: list[float] = []
    task = asyncio.create_task(stream(session, base, tokens, progress))
    while len(progress) < 20 and not task.done():
        await asyncio.sleep(0.005)
    return task


def report(name: str, ok: bool, detail: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
    return ok


async def check_interrupts(base: str) -> bool:
    async with aiohttp.ClientSession() as session:
        first = await stream_under_way(session, base, 200)
        second = await stream(session, base, 10)
        first_result = await first
    tokens = len(first_result["times"])
    return report(
        "a second request ends the running stream (interrupt_requests, the default)",
        tokens < 200 and first_result["finish"] is None and bool(second["times"]),
        f"the first stream ended after {tokens} of 200 tokens, finish_reason "
        f"{first_result['finish']!r} ([DONE] {first_result['done']}); the second got "
        f"{len(second['times'])} tokens",
    )


async def check_one_at_a_time(base: str) -> bool:
    async with aiohttp.ClientSession() as session:
        first = await stream_under_way(session, base, 200)
        sent = time.monotonic()
        second = asyncio.create_task(stream(session, base, 5))
        first_result = await first
        first_ended = time.monotonic() - sent
        second_result = await second
    waited = second_result["times"][0] if second_result["times"] else None
    return report(
        "one request at a time (--interrupt_requests False): the second waits",
        first_result["finish"] == "length"
        and len(first_result["times"]) > 20
        and waited is not None
        and waited >= first_ended - 0.05,
        f"the first stream went on to its end ({len(first_result['times'])} tokens, "
        f"finish_reason {first_result['finish']!r}) {first_ended:.2f} s after the second "
        f"was sent; the second's first token came {waited} s after it was sent",
    )


async def check_no_usage(base: str) -> bool:
    async with aiohttp.ClientSession() as session:
        result = await stream(session, base, 20, usage=True)
    return report(
        "no usage in streams, even with stream_options.include_usage",
        result["usage"] is None and bool(result["times"]),
        f"{len(result['times'])} tokens, usage {result['usage']!r}",
    )


async def check_chatsite(base: str, workdir: Path) -> bool:
    """Two users' answers at once through chatsite, limit 1, on the interrupting server."""
    site = LiveSite(
        workdir,
        {
            "OPENAI_BASE_URL": base,
            "OPENAI_API_KEY": "none",
            "OPENAI_MODEL": "tiny",
            "CHATSITE_UPSTREAM_CONCURRENCY": "1",
        },
    )
    site.migrate()
    site.start()
    try:
        clients = [SiteClient(site.base) for _ in range(2)]
        for i, client in enumerate(clients):
            await asyncio.to_thread(client.sign_up, f"local{i}")
        started = await asyncio.gather(
            *(asyncio.to_thread(c.new_conversation, "Tell me a story.") for c in clients)
        )
        deadline = time.monotonic() + 300
        rows: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline:
            rows = site.query(
                "SELECT status, length(content), finish_reason FROM conversations_message "
                "WHERE role = 'assistant' ORDER BY id"
            )
            titles = site.query("SELECT title_source FROM conversations_conversation")
            if len(rows) == 2 and all(r[0] != "streaming" for r in rows):
                await asyncio.sleep(5)  # the titles, asked only now
                titles = site.query("SELECT title_source FROM conversations_conversation")
                break
            await asyncio.sleep(0.5)
    finally:
        site.stop()
    whole = len(rows) == 2 and all(r[0] == "complete" and r[2] in ("length", "stop") for r in rows)
    return report(
        "through chatsite with CHATSITE_UPSTREAM_CONCURRENCY=1: both answers whole",
        whole,
        f"answers {rows}; titles {titles}; conversations {len(started)}",
    )


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="chatsite-llama-"))  # kept: the logs
    print(f"logs in {tmp}", flush=True)
    model = tmp / "tiny.gguf"
    make_model(args.llama_python, Path(args.vocab), model)
    results = []
    server = Server(args.llama_python, model, log=tmp / "server-default.log")
    try:
        await server.ready()
        results.append(await check_interrupts(server.base))
        results.append(await check_no_usage(server.base))
        results.append(await check_chatsite(server.base, tmp))
    finally:
        server.stop()
    server = Server(
        args.llama_python,
        model,
        "--interrupt_requests",
        "False",
        log=tmp / "server-one-at-a-time.log",
    )
    try:
        await server.ready()
        results.append(await check_one_at_a_time(server.base))
    finally:
        server.stop()
    return 0 if all(results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--llama-python", required=True)
    parser.add_argument("--vocab", required=True, help="ggml-vocab-llama-spm.gguf")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
