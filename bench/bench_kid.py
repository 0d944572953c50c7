"""KID with and without the evaluator's cache of the real side, timed side by side.

The cached call skips the real-vs-real kernel and its subset sums (what every evaluation of
one search shares); both give identical values, which the script checks. Interleaved repeats,
medians and their ratio:

    python bench/bench_kid.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from bench_train import cpu_name  # the same device name in every benchmark

import ganarch
from ganarch.score import quality as q


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=int, default=1438, help="real features (digits' train split)")
    p.add_argument("--fake", type=int, default=1000, help="generated features per evaluation")
    p.add_argument("--dim", type=int, default=128, help="feature dimension")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()

    gen = torch.Generator().manual_seed(0)
    real = torch.randn(args.real, args.dim, generator=gen)
    fakes = [torch.randn(args.fake, args.dim, generator=gen) for _ in range(args.repeats)]
    cache: dict = {}
    q.kid(real, fakes[0], cache=cache)  # fill the cache, as the first evaluation does

    plain, cached = [], []
    for i, fake in enumerate(fakes):
        timed = [
            (plain, lambda f=fake: q.kid(real, f)),
            (cached, lambda f=fake: q.kid(real, f, cache=cache)),
        ]
        for into, fn in timed if i % 2 == 0 else reversed(timed):  # alternate who goes first
            into.append(_time(fn))
        a, b = q.kid(real, fake), q.kid(real, fake, cache=cache)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), "cache changed the value"

    result = {
        "device": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "ganarch": ganarch.__version__,
        "shape": f"real {args.real}x{args.dim}, fake {args.fake}x{args.dim}, 50 subsets",
        "plain_ms_median": round(1000 * statistics.median(plain), 1),
        "cached_ms_median": round(1000 * statistics.median(cached), 1),
        "speedup": round(statistics.median(plain) / statistics.median(cached), 2),
        "per_repeat_ratio": [round(a / b, 2) for a, b in zip(plain, cached, strict=True)],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
