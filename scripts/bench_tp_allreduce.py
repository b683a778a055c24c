"""The rank-key exchange of tensor-parallel selection, timed alone on 2 GPUs (issue 8): an in-place MIN
all-reduce of a [rows, max_model_len] int32 buffer through vLLM's PyNccl communicator (what
compat.tp_all_reduce_min_ uses) and through torch.distributed/NCCL, eager and replayed from a CUDA graph.

    torchrun --nproc-per-node 2 scripts/bench_tp_allreduce.py --rows 16 --width 32832
"""

from __future__ import annotations

import argparse
import json
import os

import torch
import torch.distributed as dist
import triton


def timed(fn) -> tuple[float, float]:
    """(eager median ms, CUDA-graph replay median ms)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    eager = triton.testing.do_bench(fn, warmup=5, rep=50, return_mode="median")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    replay = triton.testing.do_bench(graph.replay, warmup=5, rep=50, return_mode="median")
    return eager, replay


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--width", type=int, default=32832)
    args = ap.parse_args()
    rank = int(os.environ["RANK"])
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", device_id=torch.device("cuda", rank))
    cpu_group = dist.new_group(backend="gloo")
    keys = torch.randint(0, 1 << 20, (args.rows, args.width), device="cuda", dtype=torch.int32)
    out = {"rows": args.rows, "width": args.width, "bytes": keys.numel() * 4, "device": torch.cuda.get_device_name()}

    def torch_nccl():
        dist.all_reduce(keys, op=dist.ReduceOp.MIN)

    out["torch_nccl_ms"] = timed(torch_nccl)
    try:
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator

        comm = PyNcclCommunicator(cpu_group, device=torch.device("cuda", rank))

        def pynccl():
            keys.copy_(comm.all_reduce(keys, op=dist.ReduceOp.MIN))

        out["pynccl_ms"] = timed(pynccl)
    except Exception as e:  # noqa: BLE001 - report, keep the torch numbers
        out["pynccl_error"] = repr(e)
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
