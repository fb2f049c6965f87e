"""Does verification time depend on how much of a real key a token gets right?

A key check that compares the presented token with the real key byte by byte
and stops at the first difference answers faster the less of the key a token
shares: an attacker who can time it learns the key one character at a time.
asgi_apikey never compares tokens: it looks up the SHA-256 digest of the token
(and confirms the match with ``hmac.compare_digest`` on digests), so a token
that shares a long prefix with a key has a digest that shares nothing with the
key's.

This script measures it. For every prefix length ``n`` from 0 to the key's
length, a token of the key's length that agrees with the key on exactly its
first ``n`` characters is verified many times, in shuffled rounds, and the
median time per length is reported with the Spearman rank correlation between
length and time and the slope of a least-squares line (ns per shared
character) with a bootstrap 95% interval.

As a positive control, the same is measured for a comparison that does leak (a
Python loop that stops at the first differing character), so the report also
shows that this machine and sample size can see a leak when there is one.

    python3 -m benchmarks.timing             # under a minute; writes results/timing.md
    python3 -m benchmarks.timing --smoke     # seconds: proves it runs, measures nothing

The result is reported, never asserted: timings on a shared machine are noisy,
and a test that fails on noise teaches people to ignore it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgi_apikey import APIKeyAuth
from benchmarks.report import write_results

RESULTS = Path(__file__).resolve().parent / "results"
KEY = "sk-live-7Hq2Zp9Lm4Xv8Rt1Nc6Bw3Ky5Jd0Fg2Sa4Qe"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def token_sharing(key: str, shared: int, chooser: random.Random) -> str:
    """A token as long as ``key`` that agrees with it on exactly ``shared`` leading characters."""
    if not 0 <= shared <= len(key):
        raise ValueError(f"shared must be from 0 to {len(key)}, not {shared}")
    if shared == len(key):
        return key
    differing = chooser.choice([c for c in ALPHABET if c != key[shared]])
    rest = "".join(chooser.choice(ALPHABET) for _ in range(len(key) - shared - 1))
    return key[:shared] + differing + rest


def leaky_equal(a: bytes, b: bytes) -> bool:
    """The positive control: a comparison that stops at the first difference (never use this)."""
    if len(a) != len(b):
        return False
    return all(x == y for x, y in zip(a, b, strict=True))  # all() stops at the first False


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The Spearman rank correlation of two equally long samples (ties get their mean rank)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("spearman needs two samples of the same length, at least 2 each")
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return 0.0
    return float(cov / (vx * vy) ** 0.5)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ``ys`` on ``xs``."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    vx = sum((x - mx) ** 2 for x in xs)
    if vx == 0:
        raise ValueError("slope needs at least two different x values")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / vx


def bootstrap_slope(
    samples: dict[int, list[float]], chooser: random.Random, resamples: int = 1000
) -> tuple[float, float]:
    """A 95% interval for the slope of median time on shared length, resampling rounds."""
    lengths = sorted(samples)
    rounds = len(samples[lengths[0]])
    found = []
    for _ in range(resamples):
        picked = [chooser.randrange(rounds) for _ in range(rounds)]
        medians = [statistics.median(samples[n][i] for i in picked) for n in lengths]
        found.append(slope(lengths, medians))
    found.sort()
    return found[int(0.025 * resamples)], found[int(0.975 * resamples) - 1]


@dataclass(frozen=True)
class Finding:
    """What one check's timings say about prefix length and time."""

    name: str
    medians_ns: dict[int, float]
    spearman: float
    slope_ns_per_char: float
    slope_interval: tuple[float, float]

    @property
    def correlated(self) -> bool:
        """Whether time depends on the prefix: the slope's 95% interval excludes 0."""
        low, high = self.slope_interval
        return low > 0 or high < 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "medians_ns": self.medians_ns,
            "spearman": self.spearman,
            "slope_ns_per_char": self.slope_ns_per_char,
            "slope_interval": list(self.slope_interval),
            "correlated": self.correlated,
        }


def measure(
    check: Callable[[bytes], object],
    tokens: dict[int, bytes],
    *,
    rounds: int,
    calls: int,
    chooser: random.Random,
) -> dict[int, list[float]]:
    """Per round and shared length, the mean ns of ``calls`` calls of ``check``; shuffled rounds."""
    samples: dict[int, list[float]] = {n: [] for n in tokens}
    order = list(tokens)
    clock = time.perf_counter_ns
    for _ in range(rounds):
        chooser.shuffle(order)
        for shared in order:
            token = tokens[shared]
            started = clock()
            for _ in range(calls):
                check(token)
            samples[shared].append((clock() - started) / calls)
    return samples


def analyse(name: str, samples: dict[int, list[float]], chooser: random.Random) -> Finding:
    lengths = sorted(samples)
    medians = {n: statistics.median(samples[n]) for n in lengths}
    # Correlation over every (length, round) pair, so it reflects the spread too.
    xs = [float(n) for n in lengths for _ in samples[n]]
    ys = [t for n in lengths for t in samples[n]]
    return Finding(
        name=name,
        medians_ns=medians,
        spearman=spearman(xs, ys),
        slope_ns_per_char=slope(lengths, [medians[n] for n in lengths]),
        slope_interval=bootstrap_slope(samples, chooser),
    )


def run(*, rounds: int, calls: int, step: int, seed: int | None) -> dict[str, Any]:
    chooser = random.Random(seed)
    auth = APIKeyAuth([KEY])
    snapshot = auth.snapshot
    lengths = sorted({*range(0, len(KEY), step), len(KEY) - 1})
    tokens = {n: token_sharing(KEY, n, chooser).encode() for n in lengths}
    secret = KEY.encode()
    checks: dict[str, Callable[[bytes], object]] = {
        "asgi_apikey (KeySnapshot.resolve)": snapshot.resolve,
        "positive control: a compare that stops at the first difference": lambda token: leaky_equal(
            token, secret
        ),
    }
    for check in checks.values():  # every token is refused: none of them is the key
        if any(check(token) not in (None, False) for token in tokens.values()):
            raise AssertionError("a token that is not the key was accepted")
        measure(check, tokens, rounds=1, calls=max(1, calls // 10), chooser=chooser)  # warm-up
    findings = [
        analyse(name, measure(check, tokens, rounds=rounds, calls=calls, chooser=chooser), chooser)
        for name, check in checks.items()
    ]
    return {
        "key_length": len(KEY),
        "lengths": lengths,
        "settings": {"rounds": rounds, "calls": calls, "step": step, "seed": seed},
        "python": sys.version.split()[0],
        "findings": [finding.as_dict() for finding in findings],
    }


def markdown(result: dict[str, Any]) -> str:
    settings = result["settings"]
    lines = [
        "# Verification time against the shared prefix",
        "",
        f"Tokens of the key's length ({result['key_length']} characters) sharing 0 to "
        f"{result['key_length'] - 1} leading characters with it; {settings['rounds']} shuffled "
        f"rounds of {settings['calls']} calls per length; Python {result['python']}.",
        "Correlated means the bootstrap 95% interval of the slope excludes zero.",
        "",
        "| check | ns at 0 shared | ns at most shared | slope ns/char (95% interval) "
        "| Spearman | correlated |",
        "|---|---|---|---|---|---|",
    ]
    for finding in result["findings"]:
        medians = finding["medians_ns"]
        first, last = medians[min(medians)], medians[max(medians)]
        low, high = finding["slope_interval"]
        lines.append(
            f"| {finding['name']} | {first:.0f} | {last:.0f} "
            f"| {finding['slope_ns_per_char']:+.3f} ({low:+.3f} to {high:+.3f}) "
            f"| {finding['spearman']:+.2f} | {'**yes**' if finding['correlated'] else 'no'} |"
        )
    for finding in result["findings"]:
        if not finding["correlated"]:
            bound = max(abs(x) for x in finding["slope_interval"])
            lines += [
                "",
                f"{finding['name']}: no dependence on the shared prefix was found; any there is "
                f"is smaller than {bound:.2f} ns per shared character, "
                f"{bound * result['key_length']:.0f} ns over the whole key.",
            ]
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.timing", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves it runs")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--step", type=int, default=2, help="prefix lengths measured: every Nth")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args(argv)
    if options.smoke:
        options.rounds, options.calls, options.step = 3, 5, 12
    result = run(rounds=options.rounds, calls=options.calls, step=options.step, seed=options.seed)
    write_results(options.out, "timing", result, markdown(result))
    print(f"written to {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
