"""Kernel benchmark on one GPU: our sparse paged decode and our selection step vs dense paged decode attention
(vLLM's FLASH_ATTN/FA3, vLLM's Triton unified attention, FlashInfer's batch decode) on the same bf16 paged cache
with shuffled pages.
32 query / 8 KV heads, head_dim 128, block size 16, vLLM's NHD layout.

    python scripts/bench_kernels.py --out $OUT       # sweeps the sparse kernel's launch shape, then the table

1. Launch-shape sweep of the sparse kernel (SparseDecodeTuning) on three representative shapes; the best total
   is used for the table (and is what lessismore_vllm.kernels.DEFAULT_TUNING should hold).
Every time is the median of CUDA-graph replays (triton.testing.do_bench on graph.replay), as vLLM runs decode;
with --layers N, each replay runs N layers back to back (N caches) and times are per layer.
2. Table over batch x context x budget: time (ms), KV bytes actually read, effective GB/s and % of peak HBM for
   FA3, vLLM Triton and FlashInfer dense decode and our sparse decode; our speedup over each dense kernel; the
   selection step (Triton kernels; the logits kernel alone; the variant with the static-shape torch union); and a
   selection layer (FA3 dense decode + our selection step, and our fused pass + selection) as a multiple of a dense
   decode layer, alone and in its chain (+ the model's MLP + a sparse layer; SelectionChain), where the default side
   stream overlaps the selection with the MLP.
Writes bench_kernels.json next to the printed table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

import torch
import triton

from lessismore_vllm.kernels import (
    SparseDecodeTuning, decode_logits, max_workspace_numel, select, slots_from_positions, sparse_decode,
)
from lessismore_vllm.kernels import selection as selection_module
from lessismore_vllm.selection import select_tokens_batched

PEAK_GBPS = {"H100": 3350.0, "H200": 4800.0}
HQ, HKV, D, BS = 32, 8, 128, 16
KV_BYTES_PER_TOKEN = HKV * 2 * D * 2  # one layer, bf16 K and V


def setup(batch: int, L: int, dtype=torch.bfloat16, seed=0, table_tokens: int = 0):
    """A shuffled paged cache of `batch` rows of L tokens. table_tokens > L: the block table is that many tokens wide
    (the engine's are max_model_len wide), the columns past L pointing at block 0 and never read."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    blocks = triton.cdiv(L, BS)
    num_blocks = batch * blocks + 8
    kv = torch.randn(num_blocks, BS, HKV, 2 * D, device="cuda", dtype=dtype, generator=g).permute(0, 2, 1, 3)
    perm = torch.randperm(num_blocks, device="cuda", generator=g)[: batch * blocks]
    block_table = perm.view(batch, blocks).to(torch.int32)
    if table_tokens > L:
        pad = torch.zeros(batch, triton.cdiv(table_tokens, BS) - blocks, device="cuda", dtype=torch.int32)
        block_table = torch.cat([block_table, pad], dim=1)
    q = torch.randn(batch, HQ, D, device="cuda", dtype=dtype, generator=g)
    seq_lens = torch.full((batch,), L, device="cuda", dtype=torch.int32)
    return kv, block_table, q, seq_lens


def bench(fn, rep=100) -> float:
    """Median ms of fn replayed from a CUDA graph, as vLLM runs decode (no Python or launch overhead)."""
    fn()  # compile / warm up outside the capture
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return triton.testing.do_bench(graph.replay, warmup=10, rep=rep, return_mode="median")


class Case:
    """One (batch, L) paged cache with the dense kernels bound to it."""

    def __init__(self, batch: int, L: int, seed: int = 0, table_tokens: int = 0):
        self.batch, self.L = batch, L
        self.kv, self.bt, self.q, self.seq_lens = setup(batch, L, seed=seed, table_tokens=table_tokens)
        self.out = torch.empty_like(self.q)
        self.scale = D**-0.5
        self.k_cache, self.v_cache = self.kv.transpose(1, 2).split(D, dim=-1)  # [blocks, BS, Hkv, D] views
        self.cu_q = torch.arange(batch + 1, device="cuda", dtype=torch.int32)

    def fa3(self):
        from vllm.vllm_flash_attn import flash_attn_varlen_func

        flash_attn_varlen_func(q=self.q, k=self.k_cache, v=self.v_cache, out=self.out, cu_seqlens_q=self.cu_q,
                               max_seqlen_q=1, seqused_k=self.seq_lens, max_seqlen_k=self.L,
                               softmax_scale=self.scale, causal=True, block_table=self.bt, fa_version=3)

    def triton_decode(self):
        from vllm.v1.attention.ops.triton_unified_attention import unified_attention

        ones = torch.ones(self.batch, HKV, device="cuda", dtype=torch.float32)
        unified_attention(q=self.q, k=self.k_cache, v=self.v_cache, out=self.out, cu_seqlens_q=self.cu_q,
                          max_seqlen_q=1, seqused_k=self.seq_lens, max_seqlen_k=self.L, softmax_scale=self.scale,
                          causal=True, window_size=(-1, -1), block_table=self.bt, softcap=0, q_descale=None,
                          k_descale=ones, v_descale=ones)

    def flashinfer_plan(self):
        """FlashInfer's paged decode on the same cache: planned here on the host (its page table is this case's
        block table), so that flashinfer() is graph-capturable. JIT-compiles its kernel on first use."""
        import flashinfer

        pages = triton.cdiv(self.L, BS)  # its page table holds only the pages in use
        indptr = torch.arange(self.batch + 1, device="cuda", dtype=torch.int32) * pages
        indices = self.bt[:, :pages].reshape(-1).contiguous()
        last_page_len = torch.full((self.batch,), (self.L - 1) % BS + 1, device="cuda", dtype=torch.int32)
        self.fi = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            torch.empty(64 << 20, dtype=torch.uint8, device="cuda"), "NHD", use_cuda_graph=True,
            paged_kv_indptr_buffer=indptr, paged_kv_indices_buffer=indices,
            paged_kv_last_page_len_buffer=last_page_len)
        self.fi.plan(indptr, indices, last_page_len, HQ, HKV, D, BS, pos_encoding_mode="NONE",
                     q_data_type=self.q.dtype, kv_data_type=self.kv.dtype, sm_scale=self.scale)

    def flashinfer(self):
        self.fi.run(self.q, (self.k_cache, self.v_cache), out=self.out)

    def selection_buffers(self, budget: int):
        pos = torch.empty(self.batch, budget, device="cuda", dtype=torch.int32)
        cnt = torch.empty(self.batch, device="cuda", dtype=torch.int32)
        slots = torch.empty_like(pos)
        select(self.q, self.kv, self.bt, self.seq_lens, self.scale, budget, 0.25, 4, pos, cnt, slots)
        return pos, cnt, slots


def sweep(shapes: list[tuple[int, int, int]], peak, layers: int) -> tuple[SparseDecodeTuning, list[dict]]:
    grid = [SparseDecodeTuning(block_n=bn, num_warps=w, num_stages=st, target_programs=tp)
            for bn, w, st, tp in itertools.product((32, 64, 128), (4, 8), (2, 3), (264, 528))]
    bound = []
    for batch, L, budget in shapes:
        cases = [Case(batch, L, seed) for seed in range(layers)]
        bound.append((cases, [x.selection_buffers(budget) for x in cases], budget))
    results = []
    for t in grid:
        times = []
        for cases, bufs, budget in bound:
            ws = torch.empty(max_workspace_numel(cases[0].batch, HQ, HKV, D, budget, t), device="cuda",
                             dtype=torch.float32)
            try:
                times.append(bench(lambda: [sparse_decode(x.q, x.kv, slots, cnt, x.scale, x.out, ws, t)
                                            for x, (_, cnt, slots) in zip(cases, bufs)], rep=40) / layers)
            except Exception as e:  # e.g. out of shared memory for this shape
                times.append(float("inf"))
                print(f"  {t}: {type(e).__name__}", flush=True)
        gbps = [cases[0].batch * budget * KV_BYTES_PER_TOKEN / ms / 1e6
                for (cases, _, budget), ms in zip(bound, times)]
        results.append({"tuning": t.__dict__, "ms": times, "GBps": gbps, "total_ms": sum(times)})
        print(f"sweep {t.block_n:4d} w{t.num_warps} s{t.num_stages} tp{t.target_programs:5d} | " + " | ".join(
            f"{ms:6.3f} ms {g:6.0f} GB/s" + (f" {100 * g / peak:4.1f}%" if peak else "") for ms, g in zip(times, gbps)),
            flush=True)
    best = min(results, key=lambda r: r["total_ms"])
    del bound
    torch.cuda.empty_cache()
    return SparseDecodeTuning(**best["tuning"]), results


def profile_selection(batch: int, L: int, budget: int, iters: int = 20) -> dict:
    """Mean GPU microseconds per step of each kernel of a selection layer as it runs by default (its attention and
    logits in one pass, then the selection; torch.profiler, eager launches): where it goes."""
    from torch.profiler import ProfilerActivity, profile

    c = Case(batch, L)
    pos, cnt, slots = c.selection_buffers(budget)
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, budget), device="cuda", dtype=torch.float32)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            select(c.q, c.kv, c.bt, c.seq_lens, c.scale, budget, 0.25, 4, pos, cnt, slots, attention_out=c.out,
                   workspace=ws)
        torch.cuda.synchronize()
    per_kernel = {}
    for e in prof.key_averages():
        if e.device_type.name == "CUDA" or getattr(e, "device_time_total", 0) > 0:
            t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
            if t > 0:
                per_kernel[e.key[:60]] = round(t / iters, 2)
    total = sum(per_kernel.values())
    print(f"selection profile B={batch} L={L} K={budget}: {total:.1f} us of kernels per step", flush=True)
    for k, us in sorted(per_kernel.items(), key=lambda kv: -kv[1]):
        print(f"  {us:8.2f} us  {k}", flush=True)
    del c
    torch.cuda.empty_cache()
    return {"batch": batch, "L": L, "budget": budget, "kernel_us_per_step": per_kernel, "total_us": total}


def with_top_k(choice: str, fn):
    """fn() with the selection's per-head ranking forced to "flashinfer" (FlashInfer's top-k, then the rank sort) or
    "radix" (the Triton radix kernels) instead of the default (csrc/rank_keys.cu's top-k + rank keys), for
    comparison. FlashInfer's top-k builds on its first use (minutes on a fresh machine)."""
    saved = selection_module._fused_rank_keys, selection_module._flashinfer_top_k
    selection_module._fused_rank_keys = lambda: None
    if choice == "radix":
        selection_module._flashinfer_top_k = lambda: None
    try:
        return fn()
    finally:
        selection_module._fused_rank_keys, selection_module._flashinfer_top_k = saved


class SelectionChain:
    """A selection layer where the engine runs it: followed by the layer's MLP (Qwen3-8B's: gate_up 4096 x 24576,
    down 12288 x 4096, bf16) and a sparse layer. With LESSISMORE_SELECTION_STREAM=side (the default) the ranking
    and union overlap that MLP, so the selection layer's cost in a decode step is
    (chain - MLP and sparse layer alone) / (the same chain with FA3's layer - MLP and sparse layer alone)."""

    HIDDEN, INTERMEDIATE = 4096, 12288

    def __init__(self):
        g = torch.Generator(device="cuda").manual_seed(0)
        shape_up, shape_down = (2 * self.INTERMEDIATE, self.HIDDEN), (self.HIDDEN, self.INTERMEDIATE)
        self.w_up = torch.randn(shape_up, device="cuda", dtype=torch.bfloat16, generator=g) * 0.01
        self.w_down = torch.randn(shape_down, device="cuda", dtype=torch.bfloat16, generator=g) * 0.01
        self.side, self.done = torch.cuda.Stream(), torch.cuda.Event()

    def mlp(self, h):
        a = torch.nn.functional.linear(h, self.w_up)
        torch.nn.functional.linear(a[:, : self.INTERMEDIATE] * a[:, self.INTERMEDIATE :], self.w_down)

    def times(self, cases, bufs, ws, budget: int, sparse) -> dict:
        """ms per chain (one per case, back to back in one CUDA graph) and the selection layer's cost in it."""
        hs = [torch.randn(x.batch, self.HIDDEN, device="cuda", dtype=torch.bfloat16) for x in cases]

        def chain(attention, stream=None):
            def one(x, h):
                if attention == "select":
                    pos, cnt, slots = bufs[id(x)]
                    select(x.q, x.kv, x.bt, x.seq_lens, x.scale, budget, 0.25, 4, pos, cnt, slots,
                           attention_out=x.out, workspace=ws, selection_stream=stream)
                    if stream is not None:
                        self.done.record(stream)
                elif attention == "fa3":
                    x.fa3()
                self.mlp(h)
                if stream is not None:
                    torch.cuda.current_stream().wait_event(self.done)
                sparse(x)
            return lambda: [one(x, h) for x, h in zip(cases, hs)]

        t = {k: bench(chain(*a)) / len(cases) for k, a in
             {"base": ("none",), "fa3": ("fa3",), "main": ("select",), "side": ("select", self.side)}.items()}
        cost = {way: (t[way] - t["base"]) / (t["fa3"] - t["base"]) for way in ("main", "side")}
        return {"chain_mlp_sparse_ms": t["base"], "chain_fa3_ms": t["fa3"], "chain_select_main_ms": t["main"],
                "chain_select_side_ms": t["side"], "selection_layer_in_chain_vs_dense_layer": cost["side"],
                "selection_layer_in_chain_main_vs_dense_layer": cost["main"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--lengths", default="4096,8192,16384,32768,65536")
    ap.add_argument("--budgets", default="1024,2048,4096")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--no-sweep", action="store_true", help="use DEFAULT_TUNING")
    ap.add_argument("--below-budget", action="store_true", help="also contexts L <= budget: the sparse layer then "
                    "attends all L tokens through our kernel, FA3 reads the same bytes (the e2e short-context case)")
    ap.add_argument("--heads", default="32,8", help="query,KV heads of the cache and query (16,4: one rank of "
                    "the Qwen3-8B shape at tensor_parallel_size 2)")
    ap.add_argument("--no-flashinfer", dest="flashinfer", action="store_false", help="skip FlashInfer's decode "
                    "(it JIT-compiles its kernel on first use: minutes on a fresh host)")
    ap.add_argument("--layers", type=int, default=1, help="time N layers (N caches, as many queries and selections) "
                    "back to back in one CUDA graph and report ms per layer, as a decode step runs them (1: one "
                    "kernel per graph replay, which adds the replay's own launch cost to every time)")
    ap.add_argument("--table-tokens", type=int, default=0, help="block tables this many tokens wide, as the engine's "
                    "are max_model_len wide (the selection sizes its logits and the ranking's key cache by it); "
                    "default: as wide as each context")
    ap.add_argument("--no-chain", dest="chain", action="store_false", help="skip the selection layer timed in its "
                    "chain (selection layer + Qwen3-8B MLP + sparse layer, in line and on the side stream)")
    ap.add_argument("--profile", default="", help="BxLxK,...: GPU time of each selection kernel (eager, profiler)")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    global HQ, HKV, KV_BYTES_PER_TOKEN
    HQ, HKV = map(int, args.heads.split(","))
    KV_BYTES_PER_TOKEN = HKV * 2 * D * 2
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_GBPS.items() if k in name), None)
    result = {"device": name, "torch": torch.__version__, "triton": triton.__version__, "heads": [HQ, HKV]}
    try:
        import vllm

        result["vllm"] = vllm.__version__
    except ImportError:
        pass

    from lessismore_vllm.kernels import DEFAULT_TUNING

    tuning = DEFAULT_TUNING
    if not args.no_sweep:
        tuning, result["sweep"] = sweep([(1, 16384, 2048), (8, 32768, 2048), (32, 16384, 2048)], peak, args.layers)
        print(f"best launch shape: {tuning}", flush=True)
    result["tuning"] = tuning.__dict__
    result["layers_per_graph"] = args.layers
    result["table_tokens"] = args.table_tokens

    from lessismore_vllm.kernels import cuda_ext

    csrc = cuda_ext.load() is not None  # the csrc/ split kernel, timed next to the Triton one where it builds
    result["csrc_built"] = csrc
    chain = SelectionChain() if args.chain else None
    rows = []
    for batch in map(int, args.batches.split(",")):
        for L in map(int, args.lengths.split(",")):
            if args.layers * batch * L * KV_BYTES_PER_TOKEN > 48 << 30:
                continue
            # one per layer of a captured graph
            cases = [Case(batch, L, seed, args.table_tokens) for seed in range(args.layers)]
            c = cases[0]

            def per_layer(fn):  # ms per layer: fn(case) for every case, back to back in one CUDA graph
                return bench(lambda: [fn(x) for x in cases]) / len(cases)

            t_fa3 = per_layer(Case.fa3)
            try:
                t_triton = per_layer(Case.triton_decode)
            except Exception as e:
                t_triton = None
                print(f"vLLM Triton decode unavailable: {type(e).__name__}: {e}", flush=True)
            t_fi = None
            if args.flashinfer:
                try:
                    for x in cases:
                        x.flashinfer_plan()
                    t_fi = per_layer(Case.flashinfer)
                except Exception as e:
                    print(f"FlashInfer decode unavailable: {type(e).__name__}: {e}", flush=True)
            dense_bytes = batch * L * KV_BYTES_PER_TOKEN
            for budget in map(int, args.budgets.split(",")):
                if budget >= L and not args.below_budget:
                    continue
                bufs = {id(x): x.selection_buffers(budget) for x in cases}
                ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, budget, tuning), device="cuda",
                                 dtype=torch.float32)

                def sparse(x, kernel="triton"):
                    _, cnt, slots = bufs[id(x)]
                    sparse_decode(x.q, x.kv, slots, cnt, x.scale, x.out, ws, tuning, kernel)

                def select_step(x, method="triton"):
                    pos, cnt, slots = bufs[id(x)]
                    select(x.q, x.kv, x.bt, x.seq_lens, x.scale, budget, 0.25, 4, pos, cnt, slots, method=method)

                def select_layer_fused(x):  # the selection layer's attention and selection, one pass for both
                    pos, cnt, slots = bufs[id(x)]
                    select(x.q, x.kv, x.bt, x.seq_lens, x.scale, budget, 0.25, 4, pos, cnt, slots,
                           attention_out=x.out, workspace=ws)

                t_sparse = per_layer(sparse)
                t_layer_fused = per_layer(select_layer_fused)
                t_csrc = csrc and per_layer(lambda x: sparse(x, kernel="cuda"))
                t_select = per_layer(select_step)
                t_select_flashinfer = with_top_k("flashinfer", lambda: per_layer(select_step))
                t_select_radix = with_top_k("radix", lambda: per_layer(select_step))
                t_select_torch = per_layer(lambda x: select_step(x, "torch"))
                pos, cnt, slots = bufs[id(c)]
                width = c.bt.shape[1] * BS
                t_logits = bench(lambda: decode_logits(c.q, c.kv, c.bt, c.seq_lens, c.scale, width, fill_tail=False))
                logits = decode_logits(c.q, c.kv, c.bt, c.seq_lens, c.scale, width)
                t_union = bench(lambda: select_tokens_batched(logits, c.seq_lens, budget, 0.25, 4, pos, cnt))
                t_slots = bench(lambda: slots_from_positions(c.bt, pos, BS, slots))
                sparse_bytes = batch * min(budget, L) * (KV_BYTES_PER_TOKEN + 4)  # a row attends min(L, budget)
                row = {
                    "batch": batch, "L": L, "budget": budget,
                    "fa3_ms": t_fa3, "fa3_GBps": dense_bytes / t_fa3 / 1e6,
                    "triton_ms": t_triton, "triton_GBps": t_triton and dense_bytes / t_triton / 1e6,
                    "flashinfer_ms": t_fi, "flashinfer_GBps": t_fi and dense_bytes / t_fi / 1e6,
                    "sparse_speedup_vs_flashinfer": t_fi and t_fi / t_sparse,
                    "sparse_ms": t_sparse, "sparse_GBps": sparse_bytes / t_sparse / 1e6,
                    "sparse_speedup_vs_fa3": t_fa3 / t_sparse,
                    "csrc_ms": t_csrc or None, "csrc_GBps": t_csrc and sparse_bytes / t_csrc / 1e6,
                    "sparse_speedup_vs_triton": t_triton and t_triton / t_sparse,
                    "selection_step_ms": t_select, "selection_logits_ms": t_logits,
                    "selection_top_k": selection_module.top_k_choice(), "selection_step_radix_top_k_ms": t_select_radix,
                    "selection_step_flashinfer_top_k_ms": t_select_flashinfer,
                    "rank_sort": selection_module.rank_sort_choice(),  # csrc/rank_keys.cu ("cuda") or Triton
                    "selection_step_torch_union_ms": t_select_torch, "torch_union_only_ms": t_union,
                    "torch_slots_only_ms": t_slots,
                    "selection_layer_separate_vs_dense_layer": (t_fa3 + t_select) / t_fa3,  # FA3 + selection step
                    "selection_layer_fused_ms": t_layer_fused,  # attention + logits in one pass, then the selection
                    "selection_layer_vs_dense_layer": t_layer_fused / t_fa3,
                }
                if chain is not None:
                    row.update(chain.times(cases, bufs, ws, budget, sparse))
                if peak:
                    for k in ("fa3", "triton", "flashinfer", "sparse", "csrc"):
                        if row[f"{k}_GBps"]:
                            row[f"{k}_pct_peak"] = 100 * row[f"{k}_GBps"] / peak
                rows.append(row)
                print(f"B={batch:3d} L={L:6d} K={budget:5d} | FA3 {t_fa3:7.3f} ms {row['fa3_GBps']:5.0f} GB/s | "
                      f"triton {t_triton or 0:7.3f} | flashinfer {t_fi or 0:7.3f} | "
                      f"sparse {t_sparse:6.3f} ms {row['sparse_GBps']:5.0f} GB/s "
                      f"({row.get('sparse_pct_peak', 0):4.1f}%) x{row['sparse_speedup_vs_fa3']:5.2f} vs FA3 | "
                      f"csrc {t_csrc or 0:6.3f} ms ({row.get('csrc_pct_peak', 0):4.1f}%) | "
                      f"select {t_select:6.3f} (top-k {row['selection_top_k']}, rank sort {row['rank_sort']}; "
                      f"flashinfer top-k {t_select_flashinfer:.3f}; radix top-k {t_select_radix:.3f}; "
                      f"logits {t_logits:.3f}; torch-union variant {t_select_torch:.3f}) "
                      f"layer: FA3 + select {row['selection_layer_separate_vs_dense_layer']:5.2f}x dense, "
                      f"fused {t_layer_fused:6.3f} ms {row['selection_layer_vs_dense_layer']:5.2f}x"
                      + (f"; in its chain {row['selection_layer_in_chain_vs_dense_layer']:5.2f}x (side stream), "
                         f"{row['selection_layer_in_chain_main_vs_dense_layer']:5.2f}x (in line)" if chain else ""),
                      flush=True)
            del c, cases
            torch.cuda.empty_cache()
    result["rows"] = rows
    result["selection_profile"] = [profile_selection(*map(int, spec.split("x"))) for spec in args.profile.split(",")
                                   if spec]
    Path(args.out, "bench_kernels.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
