"""The tensor-parallel agreement check (LESSISMORE_TP_CHECK): fingerprints are exact and a rank that selected
another set is counted, with a simulated SUM all-reduce over two ranks."""

import torch

from lessismore_vllm.stats import SparseStats, selection_checksums


def _rows(seed: int, rows: int = 5, width: int = 64, max_pos: int = 40000):
    g = torch.Generator().manual_seed(seed)
    positions = torch.stack([torch.randperm(max_pos, generator=g)[:width].sort().values for _ in range(rows)])
    counts = torch.randint(1, width + 1, (rows,), generator=g)
    return positions.to(torch.int32), counts.to(torch.int32)


def test_checksums_ignore_entries_past_the_count_and_see_any_changed_position():
    positions, counts = _rows(0)
    base = selection_checksums(positions, counts)
    stale = positions.clone()
    for r, n in enumerate(counts.tolist()):
        stale[r, n:] = 12345  # past the count: not part of the set
    assert torch.equal(selection_checksums(stale, counts), base)
    moved = positions.clone()
    moved[2, 0] += 1
    assert not torch.equal(selection_checksums(moved, counts)[2], base[2])
    assert torch.equal(selection_checksums(moved, counts)[[0, 1, 3, 4]], base[[0, 1, 3, 4]])
    assert base.abs().max() < 2**24  # exact in float32, so a float SUM all-reduce adds it exactly


def test_check_agreement_counts_rows_that_differ_on_another_rank():
    positions, counts = _rows(1)
    # row 2 is CUDA-graph padding, row 4 fits the budget (not ranked: both not counted)
    seq_lens = torch.tensor([900, 800, 0, 700, 60], dtype=torch.int32)
    other = positions.clone()
    other[3, 0] = other[3, 0] + 1  # the other rank chose another token in row 3
    other_sums = selection_checksums(other, counts)
    stats = SparseStats("cpu")
    stats.check_agreement(positions, counts, seq_lens, 64, lambda mine: mine + other_sums, tp_size=2)
    assert stats.agreement.tolist() == [3, 1]
    stats.check_agreement(positions, counts, seq_lens, 64, lambda mine: mine * 2, tp_size=2)  # ranks agree
    assert stats.agreement.tolist() == [6, 1]
