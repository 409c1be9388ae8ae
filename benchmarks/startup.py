"""Time from process start to the first finished train step, cold and with a warm cache.

    python -m benchmarks.startup [--batch_size 128] [--cache_dir DIR] [--runs 3]

Spawns fresh Python processes one after another, all sharing one persistent compilation cache
(a new, empty one unless --cache_dir is given): the first compiles and fills the cache, the
next ones start warm. Each child reports when its imports finished, when the train state
existed and when its first step finished; the parent measures from spawning to that moment
(not to the child's exit).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import common

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import jax
from ssinfogan_jax import compilation_cache
compilation_cache.enable(sys.argv[1])
from benchmarks import common
from ssinfogan_jax import default_config  # What common.jax_step imports: timed as imports.
from ssinfogan_jax import experiment, train
t_import = time.perf_counter()
step, state, batch = common.jax_step(int(sys.argv[2]))
jax.block_until_ready((state, batch))
t_state = time.perf_counter()
state, metrics = step(state, batch)
jax.block_until_ready(metrics)
t_step = time.perf_counter()
print(json.dumps(dict(imports=t_import - t0, state=t_state - t_import, first_step=t_step - t_state,
                      done=time.time())), flush=True)
"""


def run_child(cache_dir: str, batch_size: int) -> dict:
    start = time.time()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, cache_dir, str(batch_size)],
        capture_output=True,
        text=True,
        check=True,
        cwd=common.REPO,
    )
    times = json.loads(out.stdout.strip().splitlines()[-1])
    return times | {"total": times["done"] - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--cache_dir", default="")
    parser.add_argument("--runs", type=int, default=3, help="processes: 1 cold + runs-1 warm")
    args = parser.parse_args()
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="ssinfogan_xla_cache_")
    print(f"cache: {cache_dir}; load average before: {os.getloadavg()}")
    print("| run | process start -> first step (s) | imports | train state | first step |")
    print("|---|---|---|---|---|")
    for i in range(args.runs):
        r = run_child(cache_dir, args.batch_size)
        kind = "cold" if i == 0 and not args.cache_dir else "warm"
        print(
            f"| {kind} | {r['total']:.2f} | {r['imports']:.2f} | {r['state']:.2f} "
            f"| {r['first_step']:.2f} |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
