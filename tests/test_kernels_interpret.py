"""The Triton kernels on CPU through Triton's interpreter (small shapes); tests/gpu runs the same checks on CUDA."""

import pytest
import torch

from kernel_checks import check_rank_keys, check_select, check_select_tensor_parallel, check_sparse_decode

# On CPU, conftest.py turns on TRITON_INTERPRET before anything imports triton.

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("num_heads,num_kv_heads", [(4, 4), (8, 2), (16, 2)])  # GQA 1 / 4 / 8
@pytest.mark.parametrize("head_dim", [64, 128])
def test_sparse_decode_gqa_head_dims(num_heads, num_kv_heads, head_dim):
    # budget below, equal to and above the context; a padded row (seq_len 0)
    check_sparse_decode([40, 24, 24, 0, 9, 70], num_heads, num_kv_heads, head_dim, budget=24,
                        dtype=torch.float32, device=DEVICE)


def test_sparse_decode_many_rows_and_splits():
    check_sparse_decode([(7 * i) % 90 for i in range(64)], 8, 2, 64, budget=32, dtype=torch.float32, device=DEVICE)


def test_sparse_decode_other_launch_shapes():
    """Tuning changes only the launch shape (block size in tokens, split count), never the result."""
    from lessismore_vllm.kernels import SparseDecodeTuning

    for tuning in (SparseDecodeTuning(block_n=16, max_splits=1), SparseDecodeTuning(block_n=32, target_programs=4096)):
        check_sparse_decode([70, 0, 33, 24], 8, 2, 64, budget=40, dtype=torch.float32, device=DEVICE, tuning=tuning)


def test_sparse_decode_rows_below_the_budget_use_every_split():
    """8 splits of a 128-token width: rows that attend fewer tokens (short contexts) divide their own count over the
    splits (37 tokens: 16 + 16 + 5 + five empty splits), which the combine must weigh correctly."""
    from lessismore_vllm.kernels import SparseDecodeTuning

    tuning = SparseDecodeTuning(block_n=16, max_splits=8, target_programs=4096)
    check_sparse_decode([100, 37, 0, 128, 200, 1], 8, 2, 64, budget=128, dtype=torch.float32, device=DEVICE,
                        tuning=tuning)


def test_sparse_decode_fp16():
    check_sparse_decode([50, 0, 33], 8, 2, 64, budget=32, dtype=torch.float16, device=DEVICE)


@pytest.mark.parametrize("num_heads,num_kv_heads", [(4, 4), (8, 2), (16, 2)])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_select_matches_oracle(num_heads, num_kv_heads, head_dim):
    check_select([80, 0, 16, 15, 17, 130], num_heads, num_kv_heads, head_dim, budget=16, dtype=torch.float32,
                 device=DEVICE)


def test_select_with_a_ragged_top_k_in_place_of_flashinfer(monkeypatch):
    """The FlashInfer path of the selection (on CUDA by default) with a stand-in of the same contract: each
    (row, head)'s top `mid` candidates of its range [start, start + count) (as _prepare_kernel writes them), ties
    to the lower position, offset by start, in no particular order (shuffled here), -1 past the count. The rank
    keys are then built from those positions and the logits, and the result must be the oracle's."""
    from lessismore_vllm.kernels import selection

    g = torch.Generator().manual_seed(5)
    seen_counts = []

    def ragged_top_k(logits, ranges, mid):
        rows, heads, width = logits.shape
        out = torch.full((rows * heads, mid), -1, dtype=torch.int32, device=logits.device)
        for i, (start, count) in enumerate(ranges.t().tolist()):
            seen_counts.append(count)
            segment = logits.reshape(rows * heads, width)[i, start:start + count]
            top = torch.sort(-segment, stable=True).indices[:mid]  # stable: ties to the lower position
            out[i, :top.numel()] = (top[torch.randperm(top.numel(), generator=g)] + start).to(torch.int32)
        return out.view(rows, heads, mid)

    monkeypatch.setattr(selection, "_flashinfer_top_k", lambda: ragged_top_k)
    check_select([80, 0, 16, 15, 17, 130], 8, 2, 32, budget=16, dtype=torch.float32, device=DEVICE, ties=True)
    check_select([3000, 0, 2100, 700], 4, 2, 32, budget=1200, dtype=torch.float32, device=DEVICE, fused=True)
    # rows that fit the budget have no candidates; a longer row's count is L - sinks - recent (budget 1200: 4, 296)
    assert 0 in seen_counts and 3000 - 4 - 296 in seen_counts


def test_select_with_a_stand_in_for_the_fused_cuda_ranking(monkeypatch):
    """The default CUDA path of the selection (csrc/rank_keys.cu's rank_keys_from_logits: each head's top-k and the
    rank keys in one kernel; the kernel itself: tests/gpu) with a stand-in of the same contract, built on the
    oracle's rank keys: for each row longer than the budget, keys[row, t] = min(keys[row, t], rank * total_heads +
    head_offset + head) over each head's top `mid` of [sinks, L - recent). What is checked here is the rest of the
    selection around it: the arguments it gets, the union over its keys, the tensor-parallel all-reduce hook."""
    from lessismore_vllm.kernels import selection
    from lessismore_vllm.selection import BudgetSplit, rank_keys

    calls = []

    def rank_keys_from_logits(logits, seq_lens, keys, mid, budget, sinks, recent, total_heads, head_offset):
        calls.append((mid, budget, sinks, recent, total_heads, head_offset))
        split = BudgetSplit(budget, mid, sinks, recent)
        for r, L in enumerate(seq_lens.tolist()):
            if L > budget:
                oracle = rank_keys(logits[r, :, :L], split, total_heads, head_offset).to(torch.int32)
                keys[r, :L] = torch.minimum(keys[r, :L], oracle)

    monkeypatch.setattr(selection, "_fused_rank_keys", lambda: rank_keys_from_logits)
    monkeypatch.setattr(selection, "_flashinfer_top_k", lambda: pytest.fail("FlashInfer's top-k ran"))
    check_select([80, 0, 16, 15, 17, 130], 8, 2, 32, budget=16, dtype=torch.float32, device=DEVICE, ties=True)
    check_select([3000, 0, 2100, 700], 4, 2, 32, budget=1200, dtype=torch.float32, device=DEVICE, fused=True)
    assert calls[0] == (12, 16, 4, 0, 8, 0) and calls[-1] == (900, 1200, 4, 296, 4, 0)
    check_select_tensor_parallel([900, 300, 2049], 8, 4, 32, 512, DEVICE)
    assert calls[-1][4:] == (8, 4)  # the second rank: heads 4-7 of 8


def test_rank_keys_from_ascending_top_lists_with_ties_and_signed_zeros():
    """The Triton rank-key sort (the CUDA one: tests/gpu) from FlashInfer-shaped top lists: exactly the oracle's
    keys, -0.0 and +0.0 tied as in the oracle's sort; a row that fits the budget is left untouched."""
    check_rank_keys([300, 120, 257], 4, 100, 120, DEVICE)
    check_rank_keys([300, 257], 4, 100, 120, DEVICE, seed=1, total_heads=8, head_offset=4)  # TP rank 1 of 2


def test_select_ties_and_rows_longer_than_one_tile():
    """Radix select over several 1024-token tiles, and logits that tie (decided by position, as in the oracle)."""
    check_select([3000, 0, 2100, 700], 4, 2, 32, budget=1200, dtype=torch.float32, device=DEVICE, ties=True)
    check_select([2500, 1300], 8, 2, 32, budget=1024, dtype=torch.float32, device=DEVICE, recency_ratio=0.5,
                 sinks=0)


def test_select_programs_sharing_a_row_change_nothing(monkeypatch):
    """Fewer programs than tiles: each loops over several tiles (how large batches run); same selection."""
    from lessismore_vllm.kernels import selection

    monkeypatch.setattr(selection, "SELECT_TARGET_PROGRAMS", 2)
    monkeypatch.setattr(selection, "SELECT_TILE", 256)
    check_select([1500, 0, 900, 700], 4, 2, 32, budget=300, dtype=torch.float32, device=DEVICE, ties=True)


@pytest.mark.parametrize("recency_ratio", [0.0, 1.0])
def test_select_without_window_or_without_ranking(recency_ratio):
    """recency_ratio 0: every slot ranked (no sinks, no window); 1: sinks + recent window only."""
    check_select([80, 0, 16, 17, 130], 8, 2, 64, budget=16, dtype=torch.float32, device=DEVICE,
                 recency_ratio=recency_ratio)


@pytest.mark.parametrize("method", ["triton", "torch"])
def test_select_with_fused_attention_pass(method):
    """The selection layer's attention and logits from one pass of the split kernel (attention_out): the same
    selection as the oracle on those logits, and the dense attention of every row (short, long, padded)."""
    check_select([80, 0, 16, 15, 17, 130], 8, 2, 64, budget=16, dtype=torch.float32, device=DEVICE, method=method,
                 fused=True)
    check_select([1500, 0, 900, 700], 4, 2, 32, budget=300, dtype=torch.float32, device=DEVICE,
                 ties=method == "triton", method=method, fused=True)  # torch.topk breaks ties its own way


def test_select_torch_fallback_matches_oracle():
    check_select([80, 0, 16, 15, 17, 130], 8, 2, 64, budget=16, dtype=torch.float32, device=DEVICE, method="torch")


@pytest.mark.parametrize("method", ["triton", "torch"])
def test_select_tensor_parallel_ranks_agree_with_one_device(method):
    from kernel_checks import check_select_tensor_parallel

    check_select_tensor_parallel([300, 0, 70, 12], 8, 4, 32, budget=40, device=DEVICE, method=method)


class _LaunchRecorder:
    """Stands in for a Triton kernel: records each launch's arguments, then launches the real kernel."""

    def __init__(self, kernel, name, log):
        self.kernel, self.name, self.log = kernel, name, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.log.append((self.name, dict(zip(self.kernel.arg_names, args)), kwargs))
            return self.kernel[grid](*args, **kwargs)

        return launch


def test_kernel_specialization_does_not_depend_on_batch_size(monkeypatch):
    """Decode batches of any size launch the same compiled kernels: every constexpr is the same for 1..17 rows,
    and an integer argument that changes with the batch is one the kernel never specialises on. Otherwise a
    batch size the server has not seen yet compiles kernels mid-step (measured: ~1 s per such step on a GPU)."""
    import importlib

    from kernel_checks import paged_setup
    from lessismore_vllm.kernels import selection, sparse_decode

    sparse_module = importlib.import_module("lessismore_vllm.kernels.sparse_decode")

    monkeypatch.setattr(selection, "SELECT_TILE", 256)  # several tiles, so programs per segment vary with rows
    monkeypatch.setattr(selection, "SELECT_TARGET_PROGRAMS", 16)
    log = []
    for module in (selection, sparse_module):
        for name in dir(module):
            if name.endswith("_kernel"):
                monkeypatch.setattr(module, name, _LaunchRecorder(getattr(module, name), name, log))
    dont_specialize = set(selection.BATCH_DEPENDENT_ARGS) | set(sparse_module.BATCH_DEPENDENT_ARGS)

    max_rows, budget, block_size = 17, 64, 16
    few_programs = sparse_module.SparseDecodeTuning(block_n=16, target_programs=8)  # splits: 4 at 1 row, 1 at 5+
    seq_lens = [300 + 37 * i for i in range(max_rows)]
    kv_cache, block_table = paged_setup(seq_lens, 2, 32, block_size, torch.float32, DEVICE)
    query = torch.randn(max_rows, 8, 32, device=DEVICE)
    seq = torch.tensor(seq_lens, dtype=torch.int32, device=DEVICE)
    # the builder's buffers: fixed width, as many rows as the largest batch
    positions = torch.zeros(max_rows, budget, dtype=torch.int32, device=DEVICE)
    counts = torch.zeros(max_rows, dtype=torch.int32, device=DEVICE)
    slots = torch.zeros(max_rows, budget, dtype=torch.int32, device=DEVICE)
    out = torch.empty_like(query)
    launches = {}  # rows -> {kernel: [(constexprs, int args)]}
    recorders = [getattr(m, n) for m in (selection, sparse_module) for n in dir(m) if n.endswith("_kernel")]

    def compiled_variants():  # on a GPU: the kernels Triton has compiled so far (the interpreter compiles none)
        return {r.name: sum(len(c[0]) for c in r.kernel.device_caches.values()) for r in recorders}

    for rows in (1, 2, 5, 16, 17):
        log.clear()
        selection.select(query[:rows], kv_cache, block_table[:rows], seq[:rows], 0.2, budget, 0.25, 4, positions,
                         counts, slots)
        sparse_decode(query[:rows], kv_cache, slots[:rows], counts[:rows], 0.2, out[:rows], tuning=few_programs)
        per_kernel = {}
        for name, args, kwargs in log:
            ints = {k: v for k, v in args.items() if isinstance(v, int) and not isinstance(v, bool)}
            per_kernel.setdefault(name, []).append((kwargs, ints))
        launches[rows] = per_kernel
        if DEVICE == "cuda" and rows == 1:
            compiled_after_one_row = compiled_variants()

    first = launches[1]
    assert {"_radix_hist_kernel", "_sparse_decode_split_kernel", "_combine_splits_kernel"} <= set(first)
    assert "_combine_splits_kernel" not in launches[16], "one split per (row, KV head): the split kernel's output"
    varying = set()
    for rows, per_kernel in launches.items():
        per_kernel.setdefault("_combine_splits_kernel", first["_combine_splits_kernel"])
        assert per_kernel.keys() == first.keys(), rows
        for name, calls in per_kernel.items():
            assert len(calls) == len(first[name]), (rows, name)
            for (kwargs, ints), (kwargs0, ints0) in zip(calls, first[name]):
                assert kwargs == kwargs0, f"{name}: constexprs change with the batch ({rows} rows vs 1)"
                varying |= {arg for arg in ints if ints[arg] != ints0[arg]}
    assert varying, "the check saw no batch-dependent argument (it would pass for any kernel)"
    assert varying <= dont_specialize, varying - dont_specialize
    if DEVICE == "cuda":
        assert compiled_variants() == compiled_after_one_row, "a larger batch compiled new kernel variants"


def test_plan_splits_fills_the_gpu_and_skips_the_combine_near_a_full_wave():
    from lessismore_vllm.kernels import plan_splits
    from lessismore_vllm.kernels.sparse_decode import DEFAULT_TUNING

    assert DEFAULT_TUNING.target_programs == 264
    assert plan_splits(1, 8, 2048) == 32  # max_splits
    assert plan_splits(8, 8, 2048) == 5  # 320 programs
    assert plan_splits(16, 8, 2048) == 3
    assert plan_splits(30, 8, 2048) == 1 and plan_splits(32, 8, 2048) == 1  # 240 / 256 pairs: one split
    assert plan_splits(29, 8, 2048) == 2  # 232 pairs: below 90% of the target
    assert plan_splits(1, 8, 100) == 2  # no split emptier than block_n tokens


def test_step_counters_kernel_matches_the_reference():
    """kernels.step_stats.count_step (one launch per step on CUDA) against stats.count_step_reference: padded rows
    (length 0), rows within and above the budget, more rows than one block of the kernel."""
    from lessismore_vllm.kernels.step_stats import count_step
    from lessismore_vllm.stats import count_step_reference

    g = torch.Generator().manual_seed(0)
    for rows in (1, 7, 300):
        seq_lens = torch.randint(0, 5000, (rows,), generator=g, dtype=torch.int32)
        seq_lens[1::5] = 0
        counts = seq_lens.clamp(max=2048)
        start = torch.tensor([5, 0, 7, 11], dtype=torch.int64)
        want, got = start.clone(), start.clone().to(DEVICE)
        count_step_reference(want, counts, seq_lens)
        count_step(got, counts.to(DEVICE), seq_lens.to(DEVICE))
        assert got.cpu().tolist() == want.tolist() and want[0] > 5
