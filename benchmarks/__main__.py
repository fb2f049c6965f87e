"""Run the benchmark suite and write its results.

    python3 dev.py bench                # the full suite: about 12 minutes on 2 cores
    python3 dev.py bench --smoke        # tiny rounds: proves it works, asserts no timing

The results go to ``benchmarks/results/`` (``results.md``, ``results.json``,
``chart.png``, and the end-to-end page ``e2e.md``, ``e2e.json``) unless ``--out``
names another directory. ``python -m benchmarks.e2e --out DIR`` reruns the end-to-end
part alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from asgi_apikey.settings import AuthSettings
from benchmarks import apps
from benchmarks.driver import measure, summarise
from benchmarks.e2e_report import e2e_page
from benchmarks.report import chart, environment, markdown, targets

RESULTS = Path(__file__).resolve().parent / "results"


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny rounds; check, do not measure")
    parser.add_argument("--rounds", type=int, default=30, help="in-process rounds (default 30)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per variant a round")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end server runs")
    parser.add_argument("--e2e-duration", type=float, default=3.0, help="seconds per e2e run")
    parser.add_argument("--e2e-rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    parser.add_argument("--seed", type=int, default=None, help="the shuffle's seed")
    parser.add_argument(
        "--only", action="append", default=[], help="variants whose name holds this (repeatable)"
    )
    options = parser.parse_args(argv)
    if options.smoke:
        options.rounds, options.requests = 2, 20
        options.e2e_duration, options.e2e_rounds = 0.5, 1

    # The suite measures the defaults: no AUTH_MODE, ENABLE_* or key variable of the
    # shell may change what the in-process variants do (the e2e servers drop them too).
    for name in AuthSettings.model_fields:
        os.environ.pop(name.upper(), None)
    env = environment()
    key_counts = (1, 1_000) if options.smoke else (1, 1_000, 100_000)
    chosen = apps.variants(key_counts)
    if options.only:
        wanted = {v.name for v in chosen if any(part in v.name for part in options.only)}
        wanted |= {v.baseline for v in chosen if v.name in wanted}
        chosen = [v for v in chosen if v.name in wanted]
    apps.configure_json_logging()
    print(f"in process: {len(chosen)} variants, {options.rounds} rounds", flush=True)
    times = measure(chosen, rounds=options.rounds, requests=options.requests, seed=options.seed)

    e2e = None
    if not options.no_e2e:
        from benchmarks import e2e as end_to_end

        print("end to end: uvicorn and hypercorn on 127.0.0.1", flush=True)
        # A plain `kill` must stop the servers too: SIGTERM becomes an exception.
        previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            e2e = end_to_end.run(
                duration=options.e2e_duration,
                rounds=options.e2e_rounds,
                tool="httpx" if options.smoke else None,
                encoding_rounds=2 if options.smoke else 15,
            )
        finally:
            signal.signal(signal.SIGTERM, previous)

    data = {
        "environment": env,
        "settings": {"rounds": options.rounds, "requests": options.requests},
        "rows": summarise(chosen, times),
        "targets": targets(times, e2e),
        "e2e": e2e,
        "times": times,
    }
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (options.out / "results.md").write_text(markdown(data))
    chart(data, options.out / "chart.png")
    if e2e is not None:
        page = {"environment": env, "e2e": e2e}
        (options.out / "e2e.json").write_text(json.dumps(page, indent=1) + "\n")
        (options.out / "e2e.md").write_text(e2e_page(page))
    print(markdown(data))
    print(f"written to {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
