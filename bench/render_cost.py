"""Per-frame cost of a streaming answer as it grows from 1 KB to 100 KB, per shape.

Feeds answers of five shapes through the same path a generation uses (BlockSplitter,
GrowingBlock, fragments.answer_growth_html) in frames of a fixed number of characters:

* `broken`: paragraphs, lists, code and tables, with blank lines between blocks;
* `paragraph`: one paragraph that never ends (with bold, code and links in it);
* `list`, `table`, `code`: one list, one table, one open code block that keep growing;
* `math`: paragraphs with inline formulas (and prices) between display formulas, `$$…$$`
  and `\\[…\\]` right under a line of text;
* `formula`: one display formula that never closes.

It prints bytes per frame and server time per frame around each answer size, next to
the naive baseline measured in the same run: re-rendering the whole answer into every
frame. Flat means the 100 KB row costs about what the 1 KB row costs.

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
from conversations.growing import GrowingBlock  # noqa: E402
from conversations.rendering import render  # noqa: E402
from conversations.splitting import BlockSplitter  # noqa: E402

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


SENTENCE = (
    "Here is a sentence of **explanation {n}** with `code {n}`, a [link](https://example.com/{n})"
    " and *enough* words to look like what a model writes when it keeps going. "
)
# Doubled braces: these are format strings.
MATH_SECTION = r"""Step {n}: the energy $E_{{{n}}} = m c^2$ grows with \(\alpha_{{{n}}}\),
and $5 and $10 stay prices while $\frac{{a}}{{b}}$ is a fraction. Where
$$
\int_0^{{{n}}} x^2 \, dx = \frac{{{n}^3}}{{3}}
$$
and in brackets
\[
\sum_{{i=1}}^{{{n}}} i = \frac{{{n}({n}+1)}}{{2}}
\]

"""

UNITS = {
    "broken": SECTION,
    "paragraph": SENTENCE,
    "list": "- point {n} about **this**, with `code` and *emphasis*\n",
    "table": "| row {n} | **{n}** | `value {n}` |\n",
    "code": "    total_{n} = compute(values[{n}]) * {n}  # step {n}\n",
    "math": MATH_SECTION,
    "formula": r"  + \frac{{a_{{{n}}}}}{{b_{{{n}}}}} x^{{{n}}} \\" + "\n",
}
HEADS = {
    "table": "| name | value | code |\n| --- | ---: | :--- |\n",
    "code": "```python\n",
    "formula": "$$\n",
}
SHAPES = list(UNITS)
MATH_SHAPES = ["math", "formula"]  # shown as LaTeX source until each formula closes


def answer_text(size: int, shape: str = "broken", *, whole: bool = False) -> str:
    """About `size` characters of one shape: exactly, or (`whole`) in whole units, so
    that the end is not cut inside a link or a code span."""
    parts: list[str] = [HEADS.get(shape, "")]
    length = len(parts[0])
    n = 0
    while length < size:
        parts.append(UNITS[shape].format(n=n))
        length += len(parts[-1])
        n += 1
    return "".join(parts) if whole else "".join(parts)[:size]


def frames_of(text: str, frame_chars: int) -> list[tuple[int, str, float]]:
    """(answer length, frame HTML, seconds to make it) for each frame, as a generation
    makes them."""
    splitter = BlockSplitter()
    growing = GrowingBlock(key="message-1-live")
    out = []
    for start in range(0, len(text), frame_chars):
        delta = text[start : start + frame_chars]
        t0 = time.perf_counter()
        finished, tail = splitter.feed(delta)
        if finished:
            tail_html, whole = growing.restart(tail), True
        else:
            tail_html, whole = growing.grow(tail)
        html = fragments.answer_growth_html(1, render(finished), tail_html, whole=whole)
        out.append((start + len(delta), html, time.perf_counter() - t0))
    return out


def measure(frame_chars: int, window: int = 25, shape: str = "broken") -> list[dict[str, float]]:
    text = answer_text(101 * 1024, shape)
    rows = []
    frames: list[tuple[int, int, float, int, float]] = []
    sampled = dict.fromkeys(CHECKPOINTS_KB, 0)
    for length, html, seconds in frames_of(text, frame_chars):
        # The baseline (the whole answer in every frame) only where it is reported: it is slow.
        due = [kb for kb in CHECKPOINTS_KB if length >= kb * 1024 and sampled[kb] < window]
        if not due:
            continue
        for kb in due:
            sampled[kb] += 1
        t1 = time.perf_counter()
        naive = render(text[:length])
        t2 = time.perf_counter()
        frames.append((length, len(html.encode()), seconds, len(naive.encode()), t2 - t1))
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
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    results = {}
    for shape in args.shapes.split(","):
        rows = measure(args.frame_chars, shape=shape)
        results[shape] = rows
        print(f"### {shape}\n\n{table(rows)}\n")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
