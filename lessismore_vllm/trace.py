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
