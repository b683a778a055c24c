"""select_tokens (the oracle) against a literal transcription of the design note's rule, and the batched
static-shape form against the oracle."""

import itertools

import pytest
import torch

from lessismore_vllm.selection import budget_split, select_tokens, select_tokens_batched


def literal_rule(logits: torch.Tensor, budget: int, r: float, s: int) -> list[int]:
    """../shared/design/lessismore.md section 2, transcribed line by line with Python lists."""
    num_heads, L = logits.shape
    if budget >= L:
        return list(range(L))
    k_b = min(L, budget)
    mid = int(k_b * (1 - r))
    rec = k_b - mid
    sink = s if rec >= s else 0
    rec = rec - sink
    cand = range(sink, L - rec)
    vals = logits.tolist()
    # descending by logit; ties inside a head: lower position first
    top = [sorted(cand, key=lambda t: (-vals[h][t], t))[:mid] for h in range(num_heads)]
    union, seen = [], set()
    for rank in range(mid):
        for h in range(num_heads):
            t = top[h][rank]
            if t not in seen and len(union) < mid:
                seen.add(t)
                union.append(t)
    return sorted(list(range(sink)) + union + list(range(L - rec, L)))


def random_logits(num_heads, L, ties, seed):
    g = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: many ties inside each head
        return torch.randint(0, 4, (num_heads, L), generator=g).float()
    return torch.randn(num_heads, L, generator=g)


CASES = list(
    itertools.product(
        [1, 4, 32],  # query heads
        [(16, 64), (16, 17), (16, 16), (16, 5), (64, 300), (7, 50), (1, 20), (2, 9)],  # (budget, L)
        [0.25, 0.0, 0.5],  # recency ratio
        [4, 0],  # sinks
        [False, True],  # ties
    )
)


@pytest.mark.parametrize("num_heads,budget_len,ratio,sinks,ties", CASES)
def test_oracle_matches_literal_rule(num_heads, budget_len, ratio, sinks, ties):
    budget, L = budget_len
    logits = random_logits(num_heads, L, ties, seed=hash((num_heads, budget, L, ratio, sinks, ties)) % 1000)
    got = select_tokens(logits, budget, ratio, sinks)
    assert got.dtype == torch.long
    assert got.tolist() == literal_rule(logits, budget, ratio, sinks)
    assert got.numel() == min(L, budget)
    assert torch.all(got[1:] > got[:-1]), "sorted ascending, no duplicates"
    if budget < L:
        split = budget_split(L, budget, ratio, sinks)
        chosen = set(got.tolist())
        assert set(range(split.sinks)) <= chosen, "sinks present"
        assert set(range(L - split.recent, L)) <= chosen, "recent window present"
        assert L - 1 in chosen or split.recent == 0


def test_default_budget_split_matches_design_note():
    assert budget_split(100_000, 2048) == (2048, 1536, 4, 508)


def test_union_is_rank_major_not_score_major():
    # head 1 has a much larger score scale; a score-major (summed/compared) union would take all of head 1's.
    L, budget = 40, 8
    logits = torch.zeros(2, L)
    logits[0, 10:14] = torch.tensor([4.0, 3.0, 2.0, 1.0])
    logits[1, 20:24] = torch.tensor([400.0, 300.0, 200.0, 100.0])
    got = select_tokens(logits, budget, recency_ratio=0.25, sinks=0)  # mid = 6, recent = 2
    assert got.tolist() == [10, 11, 12, 20, 21, 22, 38, 39]


@pytest.mark.parametrize("num_heads,budget,ratio,sinks", [(4, 16, 0.25, 4), (8, 32, 0.25, 4), (2, 8, 0.5, 0), (4, 1, 0.25, 4)])
def test_batched_matches_oracle(num_heads, budget, ratio, sinks):
    g = torch.Generator().manual_seed(budget)
    seq_lens = torch.tensor([0, 1, budget - 1, budget, budget + 1, 3 * budget, 100, 37])
    N = int(seq_lens.max()) + 5
    logits = torch.randn(len(seq_lens), num_heads, N, generator=g)
    out_pos = torch.full((16, budget), -7, dtype=torch.int32)
    out_cnt = torch.full((16,), -7, dtype=torch.int32)
    pos, cnt = select_tokens_batched(logits, seq_lens, budget, ratio, sinks, out_pos, out_cnt)
    for b, L in enumerate(seq_lens.tolist()):
        want = select_tokens(logits[b, :, :L], budget, ratio, sinks) if L else torch.empty(0, dtype=torch.long)
        assert int(cnt[b]) == want.numel()
        assert pos[b, : want.numel()].tolist() == want.tolist()
    assert torch.all(out_cnt[len(seq_lens):] == -7), "rows past the batch are untouched"


@pytest.mark.parametrize("tp", [2, 4])
@pytest.mark.parametrize("ties", [False, True])
def test_rank_keys_combined_across_tensor_parallel_ranks(tp, ties):
    """Each TP rank holds a contiguous slice of the query heads; the element-wise min of the ranks' keys (what the
    all-reduce MIN computes) gives exactly the single-device selection."""
    from lessismore_vllm.selection import rank_keys, union_from_keys

    for seed, (num_heads, L, budget) in enumerate([(8, 300, 40), (32, 1000, 128), (4, 90, 17)]):
        logits = random_logits(num_heads, L, ties, seed)
        split = budget_split(L, budget)
        local = num_heads // tp
        keys = [rank_keys(logits[r * local:(r + 1) * local], split, num_heads, r * local) for r in range(tp)]
        combined = torch.stack(keys).min(dim=0).values
        assert torch.equal(union_from_keys(combined, split), select_tokens(logits, budget))
