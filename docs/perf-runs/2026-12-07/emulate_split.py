"""CPU emulation (numpy-free, torch) of cluster-rank-union.diff's split ranking and union, step for step as the CUDA
code does them, checked against the oracle (lessismore_vllm.selection.rank_keys / union_from_keys). It checks the
algorithm (per-block histograms added up, each block's share of the cut, per-block stable sorts, ranks by binary
search in the other blocks' lists, ties to the lower block), not the CUDA code itself, which has not run on a GPU.
Run: python docs/perf-runs/2026-12-07/emulate_split.py"""
import torch

from lessismore_vllm.selection import budget_split, rank_keys, union_from_keys

INT32_MAX = 2**31 - 1


def order_key(x: torch.Tensor) -> torch.Tensor:
    """csrc order_key: larger float = larger uint32 (as int64); -0.0 keeps its bits (= +0.0's key)."""
    bits = x.float().view(torch.int32).long() & 0xFFFFFFFF
    neg = bits >> 31 == 1
    key = torch.where(neg, bits ^ 0xFFFFFFFF, bits ^ 0x80000000)
    return torch.where(bits == 0x80000000, bits, key)


def radix_select(shares, k):
    """radix_select<CLUSTER>: shares = each block's keys (int64 uint32 values). Returns (mask, prefix, take,
    greater[b], equal[b]) exactly as the passes 12/12/8 bits with their skip rule."""
    passes = [(4096, 0, 20), (4096, 0xFFF00000, 8), (256, 0xFFFFFF00, 0)]
    mask, prefix, take = 0, 0, k
    greater = [0] * len(shares)
    for i, (bins, pmask, shift) in enumerate(passes):
        hists = []
        for s in shares:
            sel = s[(s & pmask) == prefix] if i else s
            hists.append(torch.bincount((sel >> shift) & (bins - 1), minlength=bins))
        total = sum(hists)
        above = 0
        for b in range(bins - 1, -1, -1):  # the bin holding the take-th largest
            if above < take and above + total[b] >= take:
                break
            above += int(total[b])
        own_above = [int(h[b + 1:].sum()) for h in hists]
        own_count = [int(h[b]) for h in hists]
        greater = [g + a for g, a in zip(greater, own_above)]
        new_mask = [0xFFF00000, 0xFFFFFF00, 0xFFFFFFFF][i]
        prefix = prefix | (b << shift)
        mask = new_mask
        take = take - above
        if int(total[b]) == take and i < 2:
            return mask, prefix, take, greater, own_count
    return mask, prefix, take, greater, own_count


def share_cut(take, greater, equal):
    start, count, before = [], [], []
    g = e = 0
    for rg, re in zip(greater, equal):
        start.append(g + min(e, take))
        count.append(rg + min(e + re, take) - min(e, take))
        before.append((g, e))
        g += rg
        e += re
    return start, count, before


def compact(keys, mask, prefix, take, g0, e0):
    """Winners of one block in position order: (local index, key)."""
    out = []
    greater, equal = g0, e0
    for i, key in enumerate(keys.tolist()):
        m = key & mask
        if m > prefix or (m == prefix and equal < take):
            out.append((i, key))
        greater += m > prefix
        equal += m == prefix
    return out


def split_rank_keys(logits, split, bsplit, total_heads, head_offset):
    """rank_keys_from_logits_kernel<CLUSTER> for one row: [Hq, L] logits -> [L] keys."""
    num_heads, L = logits.shape
    keys = torch.full((L,), INT32_MAX, dtype=torch.int64)
    n_all = L - bsplit.sinks - bsplit.recent
    share = -(-n_all // split)
    for h in range(num_heads):
        cand = order_key(logits[h, bsplit.sinks: L - bsplit.recent])
        los = [min(n_all, p * share) for p in range(split)]
        parts = [cand[lo: min(n_all, lo + share)] for lo in los]
        mask, prefix, take, greater, equal = radix_select(parts, bsplit.mid)
        start, count, before = share_cut(take, greater, equal)
        lists = []
        for p in range(split):
            won = compact(parts[p], mask, prefix, take, *before[p])
            assert len(won) == count[p], (len(won), count[p])
            # stable sort by ~key (ascending = logit descending)
            won.sort(key=lambda w: (~w[1]) & 0xFFFFFFFF)
            lists.append([((~k) & 0xFFFFFFFF, bsplit.sinks + los[p] + i) for i, k in won])
        for p in range(split):
            for i, (x, pos) in enumerate(lists[p]):
                rank = i
                for r in range(split):
                    if r == p:
                        continue
                    other = [v for v, _ in lists[r]]
                    rank += sum(1 for v in other if (v <= x if r < p else v < x))
                keys[pos] = min(int(keys[pos]), rank * total_heads + head_offset + h)
    return keys


def split_union(keys, split, bsplit):
    L = keys.numel()
    n_all = L - bsplit.sinks - bsplit.recent
    share = -(-n_all // split)
    cand = (~keys[bsplit.sinks: L - bsplit.recent]) & 0xFFFFFFFF
    los = [min(n_all, p * share) for p in range(split)]
    parts = [cand[lo: min(n_all, lo + share)] for lo in los]
    mask, prefix, take, greater, equal = radix_select(parts, bsplit.mid)
    start, count, before = share_cut(take, greater, equal)
    out = [None] * bsplit.mid
    for p in range(split):
        won = compact(parts[p], mask, prefix, take, *before[p])
        for j, (i, _) in enumerate(won):
            out[start[p] + j] = bsplit.sinks + los[p] + i
    return torch.tensor(out)


def main():
    budget = 512
    bsplit = budget_split(budget + 1, budget)
    checks = 0
    for kind in ("ties", "distinct", "skewed", "equal"):
        for split in (1, 2, 3, 4, 8):
            for L in (budget + 1, 1500, 2900):
                g = torch.Generator().manual_seed(split * 7 + L)
                logits = torch.randn(4, L, generator=g)
                if kind == "ties":
                    logits = torch.round(logits * 2) / 2
                    logits[(logits == 0) & (torch.rand(logits.shape, generator=g) < 0.5)] = -0.0
                elif kind == "skewed":
                    logits[:, : L // 5] += 8.0
                elif kind == "equal":
                    logits.fill_(0.25)
                want = rank_keys(logits, bsplit, 8, 4)
                got = split_rank_keys(logits, split, bsplit, 8, 4)
                assert torch.equal(got, want), (kind, split, L)
                union = split_union(got, split, bsplit)
                assert torch.equal(union, union_from_keys(want, bsplit)[bsplit.sinks: bsplit.sinks + bsplit.mid])
                checks += 1
    print(f"{checks} cases: split ranking and union equal the oracle")


if __name__ == "__main__":
    main()
