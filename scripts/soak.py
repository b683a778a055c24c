"""Long soak of `--attention-backend lessismore` behind the OpenAI server: see lessismore_vllm/soak.py.

    python scripts/soak.py --duration 600 --concurrency 64
"""

from lessismore_vllm.soak import main

if __name__ == "__main__":
    raise SystemExit(main())
