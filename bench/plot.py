"""Draw bench/concurrency.jsonl as an SVG: p99 delay per token against simultaneous streams, one line per setup.

Run: .venv/bin/python bench/plot.py   (writes bench/concurrency.svg; plain SVG, nothing to install)
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 780, 420, 70, 50, 40, 290
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def series(rows: list[dict]) -> dict[str, list[tuple[int, float, bool]]]:
    """(streams, p99 delay in ms, every token delivered) per setup, for the streaming runs."""
    lines: dict[str, list[tuple[int, float, bool]]] = defaultdict(list)
    for row in rows:
        if "streams" not in row:
            continue
        rate = f"{row['rate']:g} tokens/s" if row["rate"] else "as fast as it can"
        alone = ", app on 1 core" if row.get("app_cores") else ""
        name = f"{row['worker_class']}, {row['store']}, {rate}{alone}"
        lines[name].append((row["streams"], row["delay_p99_ms"], row["held"] == row["streams"]))
    return {name: sorted(points) for name, points in lines.items()}


def svg(lines: dict[str, list[tuple[int, float, bool]]]) -> str:
    most_streams = max(streams for points in lines.values() for streams, _, _ in points)
    most_delay = max(delay for points in lines.values() for _, delay, _ in points)
    top_delay = 10 ** math.ceil(math.log10(max(most_delay, 10)))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(streams: float) -> float:
        return LEFT + plot_width * streams / most_streams

    def y(delay: float) -> float:  # logarithmic, from 1 ms
        return TOP + plot_height * (1 - math.log10(max(delay, 1)) / math.log10(top_delay))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">p99 delay per token through the app (ms, log) vs chats streaming '
        "at once</text>",
    ]
    decade = 1
    while decade <= top_delay:
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_width}" y1="{y(decade)}" y2="{y(decade)}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 8}" y="{y(decade) + 4}" text-anchor="end">{decade:,}</text>')
        decade *= 10
    labelled = -math.inf
    for streams in sorted({s for points in lines.values() for s, _, _ in points}):
        if x(streams) - labelled >= 32:  # labels that would overlap are left out
            parts.append(f'<text x="{x(streams)}" y="{TOP + plot_height + 18}" text-anchor="middle">{streams:,}</text>')
            labelled = x(streams)
    parts.append(
        f'<text x="{LEFT + plot_width / 2}" y="{HEIGHT - 10}" text-anchor="middle">chats streaming at once '
        "(2 workers, 2 cores shared with the backend and the client)</text>"
    )
    for index, (name, points) in enumerate(sorted(lines.items())):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(f"{x(s):.1f},{y(d):.1f}" for s, d, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for streams, delay, held in points:  # a hollow mark: some tokens or chats were lost
            fill = colour if held else "white"
            parts.append(f'<circle cx="{x(streams):.1f}" cy="{y(delay):.1f}" r="4" fill="{fill}" stroke="{colour}"/>')
        legend_y = TOP + 16 * index
        parts.append(f'<rect x="{WIDTH - RIGHT + 12}" y="{legend_y}" width="12" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{WIDTH - RIGHT + 30}" y="{legend_y + 5}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    rows = [json.loads(line) for line in (HERE / "concurrency.jsonl").read_text().splitlines() if line.strip()]
    (HERE / "concurrency.svg").write_text(svg(series(rows)))
    print(HERE / "concurrency.svg")


if __name__ == "__main__":
    main()
