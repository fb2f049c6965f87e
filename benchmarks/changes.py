"""What a key change costs at 1,000, 100,000 and 1,000,000 keys given in code.

    python -m benchmarks.changes          # ~2 minutes: results/changes.{md,json}
    python -m benchmarks.changes --smoke  # seconds: small sizes, checks every answer

As a user would do it, with digest keys (``APIKey(digest=..., name=...)``)
given in code to ``APIKeyAuth(keys=...)``, the garbage collector on:

- construction: ``APIKeyAuth(keys=keys)``, the ``APIKey`` values made before;
- one ``add_key`` of a new key, then one ``remove_key`` of it by name, in turn;
- one ``replace_keys`` of the same set with one key changed;
- the accepted path's lookup, ``snapshot.resolve`` of a present token, among a
  million keys against one key, in interleaved rounds (gc frozen, as the suite);
- memory per key (:mod:`tracemalloc`): what the authenticator allocates for its
  entries and dicts, and what the ``APIKey`` values themselves take.

Each change is timed on its own and the median of several is reported; the
million-key rows repeat fewer times (the settings in the page say how many).
Every answer is checked: the key added resolves, the key removed does not,
``replace_keys`` reports exactly the one key it changed.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from asgi_apikey import APIKey, APIKeyAuth
from asgi_apikey.keys import Accepted
from benchmarks.driver import BenchmarkError, Summary
from benchmarks.report import environment, measured_on, verdict, write_results

RESULTS = Path(__file__).resolve().parent / "results"
#: The issue's targets: a change under 1 ms at a million keys; the lookup at most 1.10x.
CHANGE_TARGET_MS = 1.0
LOOKUP_TARGET = 1.10
#: Repeats of (construction, add + remove, replace) per size; fewer where one takes seconds.
REPEATS = {1_000: (5, 21, 11), 100_000: (3, 7, 3), 1_000_000: (1, 3, 2)}
SMOKE_REPEATS = (2, 3, 2)


def secret(number: int) -> str:
    """The plain key behind digest ``number`` (only the benchmark knows it)."""
    return f"sk-bench-{number:08d}-0123456789abcdef"


def digest_key(number: int, name: str | None = None) -> APIKey:
    """A digest key as configuration gives it: no plain key in sight."""
    value = hashlib.sha256(secret(number).encode()).hexdigest()
    return APIKey(digest=f"sha256:{value}", name=name or f"customer-{number}")


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def _accepted(auth: APIKeyAuth, number: int, name: str) -> bool:
    result = auth.snapshot.resolve(secret(number).encode())
    return isinstance(result, Accepted) and result.context.key_id == name


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise BenchmarkError(what)


def changes_at(n: int, repeats: tuple[int, int, int]) -> tuple[dict[str, Any], APIKeyAuth]:
    """The costs at ``n`` keys (seconds), every answer checked; and the last authenticator."""
    builds, pairs, replaces = repeats
    made, keys = _timed(lambda: [digest_key(i) for i in range(n)])
    construction = []
    auth: APIKeyAuth | None = None
    for _ in range(builds):
        auth = None  # the previous one freed first: one table in memory at a time
        seconds, auth = _timed(lambda: APIKeyAuth(keys=keys, environment="production"))
        construction.append(seconds)
    assert auth is not None
    _check(len(auth.key_ids) == n and _accepted(auth, n - 1, f"customer-{n - 1}"), "construction")
    adds, removes = [], []
    for number in range(pairs):
        new = digest_key(n + number, f"new-{number}")
        seconds, key_id = _timed(lambda new=new: auth.add_key(new))  # type: ignore[misc]
        _check(key_id == new.key_id and _accepted(auth, n + number, new.key_id), "add_key")
        adds.append(seconds)
        seconds, gone = _timed(lambda new=new: auth.remove_key(new.key_id))  # type: ignore[misc]
        _check(gone and auth.snapshot.resolve(secret(n + number).encode()) is None, "remove_key")
        removes.append(seconds)
    replacing = []
    for number in range(replaces):
        # Key 0 swapped for another key each time: exactly one added, one removed.
        before = keys[0]
        keys[0] = digest_key(2 * n + number, f"swapped-{number}")
        seconds, changed = _timed(lambda: auth.replace_keys(keys))
        _check(
            changed.added == (keys[0].key_id,) and changed.removed == (before.key_id,),
            f"replace_keys reported {changed}",
        )
        _check(_accepted(auth, 2 * n + number, keys[0].key_id), "replace_keys")
        replacing.append(seconds)
    _check(len(auth.key_ids) == n, "the key count after the changes")
    return {
        "keys": n,
        "make_apikeys_s": made,
        "construction_s": construction,
        "add_key_s": adds,
        "remove_key_s": removes,
        "replace_keys_s": replacing,
    }, auth


def lookups(many: APIKeyAuth, n: int, rounds: int, calls: int, seed: int | None) -> dict[str, Any]:
    """ns per ``snapshot.resolve`` of a present token: n keys against one, interleaved rounds."""
    same = [secret(n - 1).encode()] * calls  # a key present in both sets
    one = APIKeyAuth(keys=[digest_key(n - 1)], environment="production")
    shuffle = random.Random(seed)
    spread = [secret(i).encode() for i in shuffle.sample(range(1, n), min(n - 1, 1024))]
    spread = (spread * (calls // len(spread) + 1))[:calls]
    variants = {
        "1 key": (one, same),
        f"{n:,} keys, the same token": (many, same),
        f"{n:,} keys, 1,024 tokens in turn": (many, spread),
    }
    for name, (auth, tokens) in variants.items():
        _check(all(isinstance(auth.snapshot.resolve(t), Accepted) for t in tokens[:2000]), name)
    times: dict[str, list[float]] = {name: [] for name in variants}
    gc.collect()
    gc.freeze()
    try:
        for number in range(rounds + 1):
            order = list(variants)
            shuffle.shuffle(order)
            for name in order:
                auth, tokens = variants[name]
                resolve = auth.snapshot.resolve
                started = time.perf_counter()
                for token in tokens:
                    resolve(token)
                if number:  # round 0 warms up: caches, the first call's allocations
                    times[name].append((time.perf_counter() - started) / calls * 1e9)
    finally:
        gc.unfreeze()
    base = times["1 key"]
    return {
        name: {
            "ns": Summary.of(values).as_dict(),
            "ratio": Summary.of([v / b for v, b in zip(values, base, strict=True)]).as_dict(),
        }
        for name, values in times.items()
    }


def memory(n: int) -> dict[str, float]:
    """Bytes per key: the ``APIKey`` values, and what the authenticator adds for them."""
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        keys = [digest_key(i) for i in range(n)]
        values = tracemalloc.get_traced_memory()[0]
        auth = APIKeyAuth(keys=keys, environment="production")
        built = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    _check(len(auth.key_ids) == n, "memory: the key count")
    return {
        "apikey_bytes_per_key": (values - start) / n,
        "auth_bytes_per_key": (built - values) / n,
    }


def run(
    sizes: Sequence[int], *, smoke: bool, rounds: int, calls: int, seed: int | None
) -> dict[str, Any]:
    env = environment()
    rows = []
    lookup: dict[str, Any] = {}
    for n in sizes:
        print(f"{n:,} keys", flush=True)
        row, auth = changes_at(n, SMOKE_REPEATS if smoke else REPEATS[n])
        if n == sizes[-1]:
            print(f"lookups among {n:,} keys", flush=True)
            lookup = lookups(auth, n, rounds, calls, seed)
        del auth
        row.update(memory(n))
        rows.append(row)
    largest = rows[-1]
    change = Summary.of([t * 1e3 for t in largest["add_key_s"] + largest["remove_key_s"]])
    ratio = Summary(*_same_token_ratio(lookup))
    return {
        "smoke": smoke,
        "environment": env,
        "settings": {"sizes": list(sizes), "rounds": rounds, "calls": calls, "seed": seed},
        "rows": rows,
        "lookups": lookup,
        "targets": [
            {
                "target": f"one add_key or remove_key at {largest['keys']:,} keys, ms",
                "measured": change.as_dict(),
                "limit": CHANGE_TARGET_MS,
                "verdict": "not measured (smoke)"
                if smoke
                else verdict(change, CHANGE_TARGET_MS, at_most=True),
            },
            {
                "target": f"resolve of a present token, {largest['keys']:,} keys / 1 key",
                "measured": ratio.as_dict(),
                "limit": LOOKUP_TARGET,
                "verdict": "not measured (smoke)"
                if smoke
                else verdict(ratio, LOOKUP_TARGET, at_most=True),
            },
        ],
    }


def _same_token_ratio(lookup: dict[str, Any]) -> tuple[float, float, float]:
    same = next(v for k, v in lookup.items() if k.endswith("the same token"))["ratio"]
    return same["median"], same["q1"], same["q3"]


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "—"
    shown = f"{statistics.median(values) * 1e3:,.2f}"
    if len(values) > 2:
        shown += f" ({min(values) * 1e3:,.2f} to {max(values) * 1e3:,.2f})"
    return shown + f", {len(values)} run{'s' if len(values) > 1 else ''}"


def _summary(summary: dict[str, float], digits: int = 2) -> str:
    return (
        f"{summary['median']:,.{digits}f} ({summary['q1']:,.{digits}f} to "
        f"{summary['q3']:,.{digits}f})"
    )


def markdown(data: dict[str, Any]) -> str:
    settings = data["settings"]
    lines = [
        "# Key changes: construction, add, remove, replace, lookup, memory",
        "",
        measured_on(data),
        "Digest keys given in code (`APIKey(digest=..., name=...)`), the garbage collector on "
        "as a user has it. Each change is timed alone: medians in ms, with the lowest and "
        "highest in parentheses and the number of runs (the million-key rows repeat fewer "
        "times: one construction, three adds and removes, two replaces). Other work may "
        "share this 2-core machine: single timings of a few ms vary by tens of per cent.",
        "",
        "## Targets (issue 19)",
        "",
        "| target | measured | limit | verdict |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {target['target']} | {_summary(target['measured'])} | ≤ {target['limit']:g} "
        f"| {target['verdict']} |"
        for target in data["targets"]
    ]
    lines += [
        "",
        "## Changes (ms)",
        "",
        "| keys | make the APIKey values | APIKeyAuth(keys=...) | add_key | remove_key "
        "| replace_keys, one key changed | APIKey bytes per key | authenticator bytes per key |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        lines.append(
            f"| {row['keys']:,} | {_ms([row['make_apikeys_s']])} "
            f"| {_ms(row['construction_s'])} | {_ms(row['add_key_s'])} "
            f"| {_ms(row['remove_key_s'])} | {_ms(row['replace_keys_s'])} "
            f"| {row['apikey_bytes_per_key']:,.0f} | {row['auth_bytes_per_key']:,.0f} |"
        )
    lines += [
        "",
        "Authenticator bytes are what `APIKeyAuth(keys=...)` allocates beyond the `APIKey` "
        "values (tracemalloc): each key's entry, context and user, and the two lookup tables.",
        "",
        "Before the lookup tables became `KeyTable`s (256 x 256 small dicts; commit d2a096b "
        "measured the copying design), an add_key took 1.2 s and a remove_key 1.2 s at a "
        "million keys, 71 to 73 ms at 100,000: each re-indexed every key. Now a change copies the "
        "shard, the row and the outer tuple it touches.",
        "",
        f"## Accepted-path lookup: `snapshot.resolve` of a present token "
        f"({settings['rounds']} rounds of {settings['calls']:,} calls, interleaved, gc frozen)",
        "",
        "| variant | ns per resolve | / 1 key |",
        "|---|---|---|",
    ]
    for name, row in data["lookups"].items():
        lines.append(f"| {name} | {_summary(row['ns'], 0)} | {_summary(row['ratio'])} |")
    lines += [
        "",
        "The resolve hashes the token (SHA-256), indexes two tuples by the digest's first two "
        "bytes and does one `dict.get`: the hash dominates. "
        "1,024 tokens in turn touch more memory than one (the issue's target is the same "
        "token; the spread row is the honest worst of the two).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.changes", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="small sizes: check, do not measure")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=20_000, help="resolves per variant a round")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--page-only", action="store_true", help="rewrite the page from the saved JSON"
    )
    options = parser.parse_args(argv)
    sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    if options.smoke:
        sizes, options.rounds, options.calls = (10, 300), 2, 200
    if options.page_only:
        data = json.loads((options.out / "changes.json").read_text())
    else:
        data = run(
            sizes,
            smoke=options.smoke,
            rounds=options.rounds,
            calls=options.calls,
            seed=options.seed,
        )
    write_results(options.out, "changes", data, markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
