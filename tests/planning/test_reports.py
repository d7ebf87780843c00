"""rss_world.reports: cells, the plain-text table, the markdown of benchmark results, subsets of sizes."""

import math

from rss_world.reports import COLUMNS, format_metric, format_table, subset, to_markdown


def block(episodes: int, success: float, ms: float | None = 2.25) -> dict:
    out = {k: 0.5 for k, _ in COLUMNS} | {"success_rate": success, "steps_over_optimal": 1.0, "ms_per_decision": ms}
    return out | {"episodes": episodes}


SUMMARY = block(4, 0.75) | {"per_size": {"3": block(3, 1.0), "8": block(1, 0.0, None)}}


def test_format_metric():
    assert [format_metric("success_rate", 0.9876), format_metric("steps_over_optimal", 1.234),
            format_metric("ms_per_decision", 12.345)] == ["98.8%", "1.23", "12.3"]
    assert format_metric("exact_match", None) == format_metric("exact_match", math.nan) == "-"


def test_format_table_rows_and_alignment():
    lines = format_table(SUMMARY, "title").splitlines()
    assert lines[0] == "title" and lines[1].split() == ["size", "episodes", *(n for _, n in COLUMNS)]
    assert set(lines[2]) == {"-", " "} and len({len(line) for line in lines[1:]}) == 1  # one width, right-aligned
    assert [line.split() for line in lines[3:]] == [
        ["3", "3", "100.0%", "50.0%", "50.0%", "50.0%", "50.0%", "1.00", "2.2"],
        ["8", "1", "0.0%", "50.0%", "50.0%", "50.0%", "50.0%", "1.00", "-"],
        ["all", "4", "75.0%", "50.0%", "50.0%", "50.0%", "50.0%", "1.00", "2.2"]]


def test_to_markdown_overall_then_per_size():
    md = to_markdown({"methods": {"gate / open loop": {"summary": SUMMARY, "seconds": 6.54}}}).splitlines()
    assert md[:3] == ["## Overall", "", "| method | episodes | success | EM | PR | invalid | hole | steps/opt | "
                      "ms/decision | suite s (CPU) |"]
    assert md[4] == "| gate / open loop | 4 | 75.0% | 50.0% | 50.0% | 50.0% | 50.0% | 1.00 | 2.2 | 6.5 |"
    assert md[6:9] == ["### gate / open loop: per size", "",
                       "| size | episodes | success | EM | PR | invalid | hole | steps/opt | ms/decision |"]
    assert md[10:] == ["| 3 | 3 | 100.0% | 50.0% | 50.0% | 50.0% | 50.0% | 1.00 | 2.2 |",
                       "| 8 | 1 | 0.0% | 50.0% | 50.0% | 50.0% | 50.0% | 1.00 | - |"]
    assert md[9] == "|" + "---|" * (len(COLUMNS) + 2)


def test_subset_weights_by_episodes():
    assert subset(SUMMARY, [3, 8], "success_rate") == 0.75
    assert subset(SUMMARY, [8, 5], "success_rate") == 0.0
    assert subset(SUMMARY, [3, 8], "ms_per_decision") == 2.25  # sizes without a value do not count
    assert subset(SUMMARY, [5], "success_rate") is None
