"""Tables of benchmark summaries (the schema of :func:`rss_world.protocols.summarize`): plain text and markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence

# (summary key, column header) of every table, in order.
COLUMNS = (("success_rate", "success"), ("exact_match", "EM"), ("progress_rate", "PR"),
           ("invalid_action_rate", "invalid"), ("hole_rate", "hole"), ("steps_over_optimal", "steps/opt"),
           ("ms_per_decision", "ms/decision"))


def format_metric(key: str, v: float | None) -> str:
    """One table cell: rates as percentages, steps/opt with two decimals, milliseconds with one; ``-`` if absent."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if key == "steps_over_optimal":
        return f"{v:.2f}"
    if key == "ms_per_decision":
        return f"{v:.1f}"
    return f"{100 * v:.1f}%"


def _cells(block: dict) -> list[str]:
    return [format_metric(k, block[k]) for k, _ in COLUMNS]


def format_table(summary: dict, title: str = "") -> str:
    """A plain-text table of one summary: one row per size, then ``all``."""
    head = ["size", "episodes"] + [name for _, name in COLUMNS]
    rows = [[s, str(m["episodes"]), *_cells(m)] for s, m in summary["per_size"].items()]
    rows.append(["all", str(summary["episodes"]), *_cells(summary)])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(r, widths))

    out = ([title] if title else []) + [line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    return "\n".join(out)


def to_markdown(results: dict) -> str:
    """Markdown of :func:`rss_world.benchmark.run_benchmark` results: one overall table, then one table per method
    with a row per size."""
    head = "| method | episodes | " + " | ".join(n for _, n in COLUMNS) + " | suite s (CPU) |"
    sep = "|" + "---|" * (len(COLUMNS) + 3)
    lines = ["## Overall", "", head, sep]
    for name, r in results["methods"].items():
        s = r["summary"]
        lines.append(f"| {name} | {s['episodes']} | " + " | ".join(_cells(s)) + f" | {r['seconds']:.1f} |")
    for name, r in results["methods"].items():
        lines += ["", f"### {name}: per size", "", head.replace("method", "size").replace(" suite s (CPU) |", ""),
                  sep[:-4]]
        for size, m in r["summary"]["per_size"].items():
            lines.append(f"| {size} | {m['episodes']} | " + " | ".join(_cells(m)) + " |")
    return "\n".join(lines) + "\n"


def subset(summary: dict, sizes: Sequence[int], key: str) -> float | None:
    """Episode-weighted mean of ``key`` over the given sizes of a summary (None when no episode counts)."""
    num = den = 0.0
    for s in sizes:
        m = summary["per_size"].get(str(s))
        if m is not None and m[key] is not None:
            num += m[key] * m["episodes"]
            den += m["episodes"]
    return num / den if den else None
