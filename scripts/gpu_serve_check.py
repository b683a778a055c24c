"""`vllm serve <Qwen3-8B-shaped dummy model> --attention-backend lessismore --load-format dummy` answering the
`openai` client, plain and streamed (issue: GPU path, must-show 3). Run on the GPU host:

    python scripts/gpu_serve_check.py --out $OUT
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

from lessismore_vllm.harness import check_completions, start_server
from lessismore_vllm.tiny_model import write_qwen3_8b_shape


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    model = write_qwen3_8b_shape(work / "qwen3-8b-shape", tokenizer=True)  # word-level tokenizer: text in/out
    log_path = Path(args.out) / "serve.log"
    proc, base = start_server(
        ["--model", str(model), "--served-model-name", "qwen3-8b-shape", "--attention-backend", "lessismore",
         "--load-format", "dummy", "--max-model-len", "8192", "--kv-cache-memory-bytes", str(8 << 30)],
        str(log_path),
    )
    try:
        prompt = " ".join(f"w{1000 + (17 * j * j + j) % 140000}" for j in range(3000))  # 3000 > budget 2048
        result = check_completions(base, "qwen3-8b-shape", prompt, max_tokens=16)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    result["ok"] = result["completion_tokens"] == 16 and result["streamed"] == result["plain"] != ""
    result["lessismore_active_logged"] = "LessIsMore active:" in log_path.read_text()
    print(json.dumps(result, indent=1))
    (Path(args.out) / "serve.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
