"""Runs one vLLM engine configuration in a fresh process (as a user would) and prints its result as JSON.

Usage: python tests/engine_runner.py '{"model": ..., "prompts": [[...]], "max_tokens": 8, "backend": ...,
       "lessismore": {...}, "engine": {...}}'   -> last stdout line: {"tokens": [...], ...} or {"error": "..."}
"""

import json
import sys


def main() -> None:
    spec = json.loads(sys.argv[1])
    from lessismore_vllm.demo import run_generation

    try:
        result = run_generation(
            spec["model"], spec["prompts"], spec["max_tokens"], spec.get("backend"), spec.get("lessismore"),
            **spec.get("engine", {}),
        )
    except Exception as e:  # startup errors are results too (bad-configuration tests)
        result = {"error": f"{type(e).__name__}: {e}"}
    print("\nRESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
