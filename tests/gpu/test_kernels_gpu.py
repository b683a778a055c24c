"""The kernel checks of tests/test_kernels_interpret.py at GPU sizes and dtypes (skipped without CUDA)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kernel_checks import check_rank_keys, check_select, check_sparse_decode  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def lens(batch, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    out = torch.randint(lo, hi, (batch,), generator=g).tolist()
    out[batch // 2] = 0  # a padded row
    return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("num_heads,num_kv_heads", [(8, 8), (32, 8), (32, 4)])
@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("batch,budget", [(1, 256), (8, 512), (64, 256)])
def test_sparse_decode(dtype, num_heads, num_kv_heads, head_dim, batch, budget):
    check_sparse_decode(lens(batch, 1, 3 * budget, batch) if batch > 1 else [2 * budget], num_heads, num_kv_heads,
                        head_dim, budget, dtype, "cuda")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("num_heads,num_kv_heads", [(32, 8), (32, 4), (16, 4)])  # the groups csrc/ is built for
@pytest.mark.parametrize("batch,budget", [(1, 256), (8, 512), (64, 256), (3, 2048)])
def test_sparse_decode_csrc_kernel(dtype, num_heads, num_kv_heads, batch, budget):
    """The CUDA split kernel of csrc/ (built here with nvcc) against the reference, as the Triton one."""
    seq_lens = lens(batch, 1, 3 * budget, batch) if batch > 1 else [2 * budget]
    check_sparse_decode(seq_lens, num_heads, num_kv_heads, 128, budget, dtype, "cuda", kernel="cuda")
    check_sparse_decode([1, 5, 0, 2 * budget], num_heads, num_kv_heads, 128, budget, dtype, "cuda", kernel="cuda")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("num_heads,num_kv_heads", [(8, 8), (32, 8), (32, 4)])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("batch,budget", [(4, 128), (64, 64)])
def test_select(dtype, num_heads, num_kv_heads, head_dim, batch, budget, top_k):
    check_select(lens(batch, 1, 4 * budget, batch), num_heads, num_kv_heads, head_dim, budget, dtype, "cuda")


@pytest.fixture(params=["cuda", "flashinfer", "radix"])
def top_k(request, monkeypatch):
    """The selection's per-head top-k: csrc/rank_keys.cu's top-k + rank keys (the default on CUDA), FlashInfer's, or
    the Triton radix kernels."""
    from lessismore_vllm.kernels import selection

    if request.param == "cuda":
        if selection.top_k_choice() != "cuda":
            pytest.skip("csrc/rank_keys.cu did not build here (see the warning)")
        return request.param
    monkeypatch.setattr(selection, "_fused_rank_keys", lambda: None)
    if request.param == "radix":
        monkeypatch.setattr(selection, "_flashinfer_top_k", lambda: None)
    elif selection.top_k_choice() != "flashinfer":
        pytest.skip("FlashInfer's top-k is unavailable here")
    return request.param


@pytest.mark.parametrize("method", ["triton", "torch"])
@pytest.mark.parametrize("fused", [False, True])
def test_select_methods_with_ties(method, fused, top_k):
    check_select([5000, 0, 3000, 900, 2049, 2048], 32, 8, 128, 2048, torch.bfloat16, "cuda", method=method,
                 ties=method == "triton", fused=fused)


@pytest.mark.parametrize("seq_lens,mid,budget", [([16384], 1536, 2048), ([9000, 2048, 0, 5000, 2049], 1536, 2048),
                                                  ([3000, 700], 700, 1200), ([600, 800], 1, 513),
                                                  ([7000, 6000], 2048, 2600)])
@pytest.mark.parametrize("kernel", ["cuda", "triton"])
def test_rank_keys(seq_lens, mid, budget, kernel):
    """The rank-key sort after FlashInfer's top-k, csrc/rank_keys.cu (built here) and Triton's, against the oracle:
    ties everywhere, zeros of both signs, rows that fit the budget, every instantiated list length up to 2048, and
    a tensor-parallel rank's keys (head offset, total heads)."""
    from lessismore_vllm.kernels import cuda_ext

    launcher = cuda_ext.rank_keys_launcher() if kernel == "cuda" else None
    if kernel == "cuda" and launcher is None:
        pytest.skip("csrc/rank_keys.cu did not build here (see the warning)")
    check_rank_keys(seq_lens, 32, mid, budget, "cuda", launcher)
    if len(seq_lens) > 1:  # tensor parallelism: these 32 heads are heads 32-63 of 64 (rank 1 of 2)
        check_rank_keys(seq_lens, 32, mid, budget, "cuda", launcher, seed=1, total_heads=64, head_offset=32)


@pytest.mark.parametrize("seq_lens,mid,budget", [([16384], 1536, 2048), ([9000, 2048, 0, 5000, 2049], 1536, 2048),
                                                  ([3000, 700], 700, 1200), ([600, 800], 1, 513),
                                                  ([7000, 6000], 2048, 2600), ([50000], 1536, 2048),
                                                  ([21000] * 4 + [3000], 1536, 2048)])
@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("bucket_limit", [None, 0, 2048])
def test_rank_keys_from_logits(seq_lens, mid, budget, ties, bucket_limit):
    """csrc/rank_keys.cu's per-head top-k + rank keys against the oracle: ties everywhere (the last radix pass and
    the tie-break to the lower position) or none (a pass skipped once its bin is taken whole), rows that fit the
    budget, rows with more candidates than the kernel caches in shared memory (45056 with one block per SM:
    50000; 16384 with more blocks than SMs: 5 rows x 32 heads of 21000), and a tensor-parallel rank's keys.
    bucket_limit: the winners ranked by bucket_ranks where their buckets are small enough (None: the default
    limit; with ties the buckets overflow it and the sort runs), always by the CUB sort (0), or always by
    bucket_ranks (2048: big buckets and equal keys inside them)."""
    import functools

    from lessismore_vllm.kernels import cuda_ext

    launcher = cuda_ext.rank_from_logits_launcher()
    if launcher is None:
        pytest.skip("csrc/rank_keys.cu did not build here (see the warning)")
    if bucket_limit is not None:
        launcher = functools.partial(launcher, bucket_limit=bucket_limit)
    check_rank_keys(seq_lens, 32, mid, budget, "cuda", launcher, from_logits=True, ties=ties)
    if len(seq_lens) > 1:  # tensor parallelism: these 32 heads are heads 32-63 of 64 (rank 1 of 2)
        check_rank_keys(seq_lens, 32, mid, budget, "cuda", launcher, seed=1, total_heads=64, head_offset=32,
                        from_logits=True, ties=ties)


@pytest.mark.parametrize("outlier", [30.0, 300.0, 1e30])
def test_rank_keys_from_logits_bucket_and_sort_agree(outlier):
    """The two ways of ranking a head's winners give the same keys, also where a few outliers widen the winners'
    key span (fewer buckets near the cut: more winners per bucket, up to the sort's fallback)."""
    from lessismore_vllm.kernels import cuda_ext

    launcher = cuda_ext.rank_from_logits_launcher()
    if launcher is None:
        pytest.skip("csrc/rank_keys.cu did not build here (see the warning)")
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 32, 12000, generator=g)
    logits[:, :, torch.randint(4, 11000, (6,), generator=g)] = outlier
    logits = logits.cuda()
    seq = torch.tensor([12000, 9000, 2049], dtype=torch.int32, device="cuda")
    got = {}
    for limit in (0, 48, 2048):
        keys = torch.full((3, 12000), torch.iinfo(torch.int32).max, dtype=torch.int32, device="cuda")
        launcher(logits, seq, keys, 1536, 2048, 4, 508, 32, 0, bucket_limit=limit)
        got[limit] = keys.cpu()
    assert torch.equal(got[0], got[48]) and torch.equal(got[0], got[2048])


@pytest.mark.parametrize("pattern", ["randn", "rising", "sampled_high", "heavy_tail", "few_values"])
def test_rank_keys_from_logits_kept_and_full_agree(pattern):
    """Long rows rank a kept subset of their candidates (rank_kept: an even sample sets the bin at or above which
    keys are kept). Against the oracle and the full path (keep=False), where the sample is fair (randn), where the
    logits follow positions (rising), where the sampled positions hold the largest logits so the sample misjudges
    and too few keys are kept (sampled_high: every 8th candidate of 16384), where outliers widen the kept keys'
    span (heavy_tail), and where a few distinct values put ties at the cut (few_values)."""
    from lessismore_vllm.kernels import cuda_ext
    from lessismore_vllm.selection import BudgetSplit, rank_keys

    launcher = cuda_ext.rank_from_logits_launcher()
    if launcher is None:
        pytest.skip("csrc/rank_keys.cu did not build here (see the warning)")
    split = BudgetSplit(2048, 1536, 4, 508)
    seq_lens = [16384 + 4 + 508, 30000, 7000, 2049]  # the first row has exactly 16384 candidates
    g = torch.Generator().manual_seed(7)
    width = max(seq_lens)
    logits = torch.randn(len(seq_lens), 32, width, generator=g)
    if pattern == "rising":
        logits += torch.linspace(0, 6, width)
    elif pattern == "sampled_high":
        logits[:, :, split.sinks::8] += 8.0
    elif pattern == "heavy_tail":
        torch.manual_seed(7)
        logits = torch.distributions.StudentT(1.5).sample(logits.shape)
    elif pattern == "few_values":
        logits = torch.randint(0, 12, logits.shape, generator=g).float()
    lens = torch.tensor(seq_lens, dtype=torch.int32, device="cuda")
    got = {}
    for keep in (True, False):
        keys = torch.full((len(seq_lens), width), torch.iinfo(torch.int32).max, dtype=torch.int32, device="cuda")
        launcher(logits.cuda(), lens, keys, 1536, 2048, 4, 508, 32, 0, keep=keep)
        got[keep] = keys.cpu().long()
    want = torch.full((len(seq_lens), width), torch.iinfo(torch.int32).max, dtype=torch.int64)
    for r, L in enumerate(seq_lens):
        want[r, :L] = rank_keys(logits[r, :, :L], split)
    assert torch.equal(got[True], want) and torch.equal(got[False], want)


def test_rank_keys_from_logits_all_equal():
    """Every logit equal: one histogram bin holds every candidate in every pass, and the ranks follow positions."""
    from lessismore_vllm.kernels import cuda_ext
    from lessismore_vllm.selection import BudgetSplit, rank_keys

    launcher = cuda_ext.rank_from_logits_launcher()
    if launcher is None:
        pytest.skip("csrc/rank_keys.cu did not build here (see the warning)")
    split = BudgetSplit(2048, 1536, 4, 508)
    logits = torch.full((2, 8, 17000), 0.5)
    logits[1, :, ::3] = -0.0  # and zeros of both signs
    logits[1, :, 1::3] = 0.0
    keys = torch.full((2, 17000), torch.iinfo(torch.int32).max, dtype=torch.int32, device="cuda")
    launcher(logits.cuda(), torch.tensor([17000, 9000], dtype=torch.int32, device="cuda"), keys, 1536, 2048, 4, 508,
             8, 0)
    want = torch.full((2, 17000), torch.iinfo(torch.int32).max, dtype=torch.int64)
    want[0] = rank_keys(logits[0], split)
    want[1, :9000] = rank_keys(logits[1, :, :9000], split)
    assert torch.equal(keys.cpu().long(), want)


@pytest.mark.parametrize("seq_lens", [[50000], [21000] * 5 + [3000, 2048, 0]])
def test_select_rows_longer_than_the_cached_keys(seq_lens, top_k):
    """Rows with more candidates than csrc/rank_keys.cu caches per block (45056 keys with one block per SM: 1 row x
    32 heads; 16384 with more blocks than SMs: 8 rows), through the whole selection: with the default kernel the
    per-head ranking reads past its cache, and the union runs over those rows' rank keys."""
    check_select(seq_lens, 32, 8, 128, 2048, torch.bfloat16, "cuda", fused=True)


def test_flashinfer_returns_ascending_positions():
    """csrc/rank_keys.cu breaks ties by the input order, so it runs only where FlashInfer's top-k returns each
    list's positions in ascending order (probed at startup); FlashInfer 0.6.14 does."""
    from lessismore_vllm.kernels import selection

    top_k = selection._flashinfer_top_k()
    if top_k is None:
        pytest.skip("FlashInfer's top-k is unavailable here")
    assert top_k.ascending
    assert selection.rank_sort_choice() in ("cuda", "triton")


def test_select_with_flashinfer_and_the_triton_rank_sort(monkeypatch):
    """The whole selection with FlashInfer's top-k followed by the Triton sort (where csrc/ does not build)."""
    from lessismore_vllm.kernels import selection

    monkeypatch.setattr(selection, "_fused_rank_keys", lambda: None)
    if selection.top_k_choice() != "flashinfer":
        pytest.skip("FlashInfer's top-k is unavailable here")
    monkeypatch.setattr(selection, "_cuda_rank_keys", lambda: None)
    check_select([5000, 0, 3000, 900, 2049, 2048], 32, 8, 128, 2048, torch.bfloat16, "cuda", ties=True, fused=True)


@pytest.mark.parametrize("budget,recency_ratio,sinks", [(1024, 0.5, 0), (300, 0.0, 4), (2731, 0.25, 4),
                                                        (4096, 0.25, 4)])
def test_select_budget_splits(budget, recency_ratio, sinks, top_k):
    """Other splits of the budget (no sinks, no recent window, 2048 ranked = FlashInfer's largest k, a budget past
    it that falls back to the radix kernels) with tied logits."""
    check_select([9000, 0, 5000, 300, 4097], 32, 8, 128, budget, torch.bfloat16, "cuda", ties=True,
                 recency_ratio=recency_ratio, sinks=sinks)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("num_heads,num_kv_heads,head_dim", [(32, 8, 128), (32, 4, 128), (8, 8, 64)])
@pytest.mark.parametrize("batch,budget", [(1, 256), (16, 512), (64, 64)])
def test_select_with_fused_attention_pass(dtype, num_heads, num_kv_heads, head_dim, batch, budget, top_k):
    check_select(lens(batch, 1, 8 * budget, batch), num_heads, num_kv_heads, head_dim, budget, dtype, "cuda",
                 fused=True)


@pytest.mark.parametrize("side", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_select_and_sparse_decode_replay_in_cuda_graph(fused, side, top_k):
    """Captured once, replayed after the lengths change in place: the kernels read lengths on the device.
    fused: the selection layer's own attention comes from the logits pass (checked against the reference).
    side: the selection runs on a side stream that the sparse layer's stream joins, as the engine runs it
    (LESSISMORE_SELECTION_STREAM=side), forked and joined inside the captured graph."""
    from kernel_checks import paged_setup

    from lessismore_vllm.kernels import select, slots_from_positions, sparse_decode
    from lessismore_vllm.reference import decode_logits as ref_logits
    from lessismore_vllm.reference import gather_kv, sparse_decode_reference
    from lessismore_vllm.selection import select_tokens

    lens_max = [4000, 3000, 2500, 100]
    kv, bt = paged_setup(lens_max, 8, 128, 16, torch.bfloat16, "cuda")
    q = torch.randn(4, 32, 128, device="cuda", dtype=torch.bfloat16)
    seq = torch.tensor([1000, 3000, 0, 100], device="cuda", dtype=torch.int32)
    pos = torch.zeros(4, 1024, device="cuda", dtype=torch.int32)
    cnt = torch.zeros(4, device="cuda", dtype=torch.int32)
    slots = torch.zeros_like(pos)
    out = torch.zeros_like(q)
    attention = torch.zeros_like(q) if fused else None
    side_stream, done = (torch.cuda.Stream(), torch.cuda.Event()) if side else (None, None)

    def step():
        select(q, kv, bt, seq, 128**-0.5, 1024, 0.25, 4, pos, cnt, slots, attention_out=attention,
               selection_stream=side_stream)
        if side:
            done.record(side_stream)
            torch.cuda.current_stream().wait_event(done)
        sparse_decode(q, kv, slots, cnt, 128**-0.5, out)

    step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    seq.copy_(torch.tensor([4000, 50, 2500, 0], dtype=torch.int32))
    graph.replay()
    torch.cuda.synchronize()
    if fused:
        every = torch.arange(bt.shape[1] * 16, dtype=torch.int32).expand(4, -1)
        want = sparse_decode_reference(q.cpu(), kv.cpu(), bt.cpu(), every, seq.cpu(), 128**-0.5)
        torch.testing.assert_close(attention.float().cpu(), want, atol=2e-2, rtol=2e-2)
    for b, L in enumerate(seq.tolist()):
        if L == 0:
            assert int(cnt[b]) == 0 and torch.all(out[b] == 0)
            continue
        k, _ = gather_kv(kv.cpu(), bt[b].cpu(), torch.arange(L))
        want = select_tokens(ref_logits(q[b].cpu(), k, 128**-0.5), 1024)
        assert int(cnt[b]) == want.numel()
        # bf16 logits from two kernels may order near-ties differently: compare as sets, allow a few swaps
        got = set(pos[b, : want.numel()].tolist())
        assert len(got ^ set(want.tolist())) <= 8
        assert torch.equal(slots[b, : want.numel()].cpu(), slots_from_positions(bt[b : b + 1].cpu(), pos[b : b + 1, : want.numel()].cpu(), 16)[0])
    ref = sparse_decode_reference(q.cpu(), kv.cpu(), bt.cpu(), pos.cpu(), cnt.cpu(), 128**-0.5)
    torch.testing.assert_close(out.float().cpu(), ref, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("method", ["triton", "torch"])
def test_select_tensor_parallel(method, top_k):
    from kernel_checks import check_select_tensor_parallel

    check_select_tensor_parallel([5000, 0, 3000, 1500], 32, 8, 128, 1024, "cuda", tp=2, method=method)
