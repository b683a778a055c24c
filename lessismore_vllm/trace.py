"""Opt-in per-step trace of what the reference path selected and attended (LESSISMORE_TRACE=/path/file.jsonl).

Tests read it to prove that our backend ran, that each request got its own selection, and how many tokens the
sparse layers attended. One JSON line per (layer, decode row, step); appended by every worker process.
"""

from __future__ import annotations

import json
import os

PATH = os.environ.get("LESSISMORE_TRACE")


def record(**fields) -> None:
    if PATH:
        with open(PATH, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), **fields}) + "\n")


def read(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def selections_by_rank(path: str) -> dict[int, list[tuple]]:
    """The selection records of a trace, per tensor-parallel rank: (layer, row, seq_len, selected) in order."""
    by_rank: dict[int, list[tuple]] = {}
    for r in read(path):
        if r["role"] == "selection" and "selected" in r:
            by_rank.setdefault(r["tp_rank"], []).append((r["layer"], r["row"], r["seq_len"], r["selected"]))
    return by_rank


def first_steps(records: list[tuple]) -> dict[tuple, tuple]:
    """(layer, row) -> (seq_len, selected) of the shortest context seen: each request's first decode step."""
    first: dict[tuple, tuple] = {}
    for layer, row, seq_len, sel in records:
        if (layer, row) not in first or seq_len < first[(layer, row)][0]:
            first[(layer, row)] = (seq_len, sel)
    return first
