"""Per-frame cost of a streaming answer as it grows from 1 KB to 100 KB.

Feeds a realistic markdown answer (paragraphs, lists, code, tables) through the same
path a generation uses (BlockSplitter + fragments.answer_growth_html) in frames of a
fixed number of characters, and prints bytes per frame and server time per frame around
each answer size, next to the naive baseline measured in the same run: re-rendering
the whole answer into every frame. Flat means the 100 KB row costs about what the 1 KB
row costs.

    .venv/bin/python -m bench.render_cost [--frame-chars 120] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django

django.setup()

from conversations import fragments  # noqa: E402
from conversations.rendering import BlockSplitter, render  # noqa: E402

SECTION = """## Part {n}

Here is a paragraph of **explanation** with `inline code`, a [link](https://example.com/{n})
and enough words to look like what a model writes when it is being thorough about a topic.

- first point about item {n}
- second point, with *emphasis*
- third point

```python
def step_{n}(values):
    total = 0
    for value in values:
        total += value * {n}
    return total
```

| name | value |
| --- | ---: |
| alpha | {n} |
| beta | {n}.5 |

"""

CHECKPOINTS_KB = [1, 10, 25, 50, 100]


def answer_text(size: int) -> str:
    parts: list[str] = []
    length = n = 0
    while length < size:
        parts.append(SECTION.format(n=n))
        length += len(parts[-1])
        n += 1
    return "".join(parts)[:size]


def measure(frame_chars: int, window: int = 25) -> list[dict[str, float]]:
    text = answer_text(101 * 1024)
    splitter = BlockSplitter()
    rows = []
    frames: list[tuple[int, int, float, int, float]] = []
    sampled = dict.fromkeys(CHECKPOINTS_KB, 0)
    for start in range(0, len(text), frame_chars):
        delta = text[start : start + frame_chars]
        length = start + len(delta)
        t0 = time.perf_counter()
        finished, tail = splitter.feed(delta)
        html = fragments.answer_growth_html(1, finished, tail)
        t1 = time.perf_counter()
        # The baseline (the whole answer in every frame) only where it is reported: it is slow.
        due = [kb for kb in CHECKPOINTS_KB if length >= kb * 1024 and sampled[kb] < window]
        if not due:
            continue
        for kb in due:
            sampled[kb] += 1
        naive = render(text[:length])
        t2 = time.perf_counter()
        frames.append((length, len(html.encode()), t1 - t0, len(naive.encode()), t2 - t1))
    for kb in CHECKPOINTS_KB:
        near = [f for f in frames if f[0] >= kb * 1024][:window]
        rows.append(
            {
                "answer_kb": kb,
                "bytes_per_frame": statistics.mean(f[1] for f in near),
                "us_per_frame": statistics.median(f[2] for f in near) * 1e6,
                "naive_bytes_per_frame": statistics.mean(f[3] for f in near),
                "naive_us_per_frame": statistics.median(f[4] for f in near) * 1e6,
            }
        )
    return rows


def table(rows: list[dict[str, float]]) -> str:
    lines = [
        "| answer so far | bytes/frame | µs/frame | naive bytes/frame | naive µs/frame |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['answer_kb']:.0f} KB | {r['bytes_per_frame']:,.0f} | {r['us_per_frame']:,.0f} "
            f"| {r['naive_bytes_per_frame']:,.0f} | {r['naive_us_per_frame']:,.0f} |"
        )
    first, last = rows[0], rows[-1]
    lines.append("")
    lines.append(
        f"100 KB / 1 KB: bytes x{last['bytes_per_frame'] / first['bytes_per_frame']:.2f}, "
        f"time x{last['us_per_frame'] / first['us_per_frame']:.2f} "
        f"(naive: bytes x{last['naive_bytes_per_frame'] / first['naive_bytes_per_frame']:.1f}, "
        f"time x{last['naive_us_per_frame'] / first['naive_us_per_frame']:.1f})"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frame-chars", type=int, default=120)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    rows = measure(args.frame_chars)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
