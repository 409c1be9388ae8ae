"""Where one MNIST train step's time goes: an XLA profile, summed per layer and kind of op.

    python -m benchmarks.profile_step [--batch_size 256] [--steps 5] [--top 25]

Traces `--steps` steps with the jax profiler (after warm-up) and joins each executed XLA op
with the optimised HLO of the compiled step: its source (the metadata op_name, e.g.
`transpose(jvp(Discriminator))/trunk/Conv_1/conv_general_dilated` is the backward pass of D's
second convolution) and, for matmuls and convolutions, its FLOPs from the operand shapes. It
prints the time per kind of work (matmuls and convolutions, the optimizer, batch norm, ...),
then the most expensive ops with their GFLOP/s, next to the machine's GEMM peak.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import math
import os
import re
import tempfile

import jax

from benchmarks import common

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+?)\{?[\d,]*\}? ([\w\-]+)\((.*)$")
_SHAPE = re.compile(r"\[([\d,]*)\]")


def _dims(shape: str) -> list[int]:
    m = _SHAPE.search(shape)
    return [int(d) for d in m.group(1).split(",") if d] if m else []


def parse_hlo(text: str) -> dict[str, dict]:
    """name -> {shape, opcode, source, flops} for every instruction of the module.

    A fusion's source and FLOPs are those of the matmul or convolution it computes (if any),
    else of its root.
    """
    ops, computations, current = {}, collections.defaultdict(list), None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name, shape, opcode, rest = m.groups()
        source = re.search(r'op_name="([^"]+)"', rest)
        op = dict(shape=shape, opcode=opcode, source=source.group(1) if source else "", flops=0.0)
        operands = re.findall(r"%([\w.\-]+)", rest.split("),")[0])
        if opcode == "dot":
            lhs = _dims(ops[operands[0]]["shape"])
            contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest).group(1)
            k = math.prod(lhs[int(d)] for d in contracting.split(",") if d)
            op["flops"] = 2.0 * math.prod(_dims(shape)) * k
        elif opcode == "convolution":
            window = re.search(r"size=([\dx]+)", rest).group(1)
            kernel_labels = re.search(r"dim_labels=\w+_(\w+)->", rest).group(1)
            kernel = _dims(ops[operands[1]]["shape"])
            cin = kernel[kernel_labels.index("i")]
            taps = math.prod(int(s) for s in window.split("x"))
            # An input gradient (lhs_dilate) skips the taps that land on inserted zeros.
            dilate = re.search(r"lhs_dilate=([\dx]+)", rest)
            if dilate:
                taps /= math.prod(int(s) for s in dilate.group(1).split("x"))
            op["flops"] = 2.0 * math.prod(_dims(shape)) * taps * cin
        ops[name] = op
        computations[current].append(name)
        called = re.search(r"calls=%([\w.\-]+)", rest)
        if opcode == "fusion" and called:
            inner = [ops[n] for n in computations[called.group(1)]]
            heavy = [o for o in inner if o["flops"]]
            if heavy:
                op["flops"] = sum(o["flops"] for o in heavy)
                op["source"] = heavy[0]["source"]
            elif inner and not op["source"]:
                op["source"] = inner[-1]["source"]
    return ops


def kind_of(op: dict, param_shapes: set[tuple[int, ...]]) -> str:
    """A coarse label for the work an op does, from its FLOPs, shape and source path."""
    source = op["source"]
    if op["flops"]:
        return "matmul / convolution"
    if tuple(_dims(op["shape"])) in param_shapes:
        return "optimizer (Adam) and other parameter-sized work"
    if "BatchNorm" in source:
        return "batch norm"
    if "ConvTranspose" in source or "Conv_" in source:
        return "conv layout work (overlap-add, patches, bias)"
    if "random" in source or "threefry" in source:
        return "random numbers (latents)"
    return "other (activations, losses, copies)"


def layer_of(source: str) -> str:
    """'transpose(jvp(Discriminator))/trunk/Conv_1/conv_general_dilated' -> 'D trunk/Conv_1 bwd'."""
    parts = source.split("/")[1:]
    if not parts:
        return "?"
    where = "bwd" if parts[0].startswith("transpose(") else "fwd"
    net = re.sub(r"^(transpose\()?(jvp\()?", "", parts[0]).rstrip(")")
    net = {"Discriminator": "D", "MnistGenerator": "G"}.get(net, net)
    return f"{net} {'/'.join(parts[1:-1])} {where}".strip()


def profile(batch_size: int, steps: int) -> tuple[dict, dict, float, set]:
    """(op name -> total us over `steps`, parsed HLO, wall seconds per step, the shapes of
    the parameters of at least 1,000 elements)."""
    runner = common.JaxRunner(batch_size)
    compiled = runner.step.lower(runner.state, runner.batch).compile()
    ops = parse_hlo(compiled.as_text())
    runner.step = compiled
    runner(3)
    with tempfile.TemporaryDirectory() as log_dir:
        with jax.profiler.trace(log_dir, create_perfetto_trace=True):
            seconds = common.time_per_step(runner, steps)
        (path,) = glob.glob(f"{log_dir}/**/perfetto_trace.json.gz", recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    busy = collections.Counter()
    for e in events:
        name = e.get("args", {}).get("hlo_op")
        if e.get("ph") == "X" and name in ops and e["args"].get("hlo_module") == "jit_train_step":
            busy[name] += e["dur"]
    params = (runner.state.generator.params, runner.state.discriminator.params)
    shapes = {x.shape for x in jax.tree.leaves(params) if x.size >= 1000}
    return busy, ops, seconds, shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(f"machine: {common.machine()}; jax {jax.__version__}; load average {os.getloadavg()}")
    peak = common.gemm_peak()["peak"] * 1e9
    busy, ops, seconds, param_shapes = profile(args.batch_size, args.steps)
    total_us = sum(busy.values())
    per_step = total_us / args.steps / 1e3
    print(
        f"batch {args.batch_size}: {seconds * 1e3:.0f} ms/step wall, {per_step:.0f} ms/step in "
        f"XLA ops; GEMM peak {peak / 1e9:.0f} GFLOP/s"
    )
    kinds = collections.Counter()
    for name, us in busy.items():
        kinds[kind_of(ops[name], param_shapes)] += us
    print("\n| kind of work | ms/step | share |\n|---|---|---|")
    for kind, us in kinds.most_common():
        print(f"| {kind} | {us / args.steps / 1e3:.1f} | {us / total_us:.1%} |")
    layers = collections.defaultdict(lambda: [0.0, 0.0])
    for name, us in busy.items():
        if ops[name]["flops"]:
            entry = layers[layer_of(ops[name]["source"])]
            entry[0] += us
            entry[1] += ops[name]["flops"] * args.steps
    print("\n| matmul / convolution | ms/step | GFLOP/step | GFLOP/s | % of peak |")
    print("|---|---|---|---|---|")
    for layer, (us, flops) in sorted(layers.items(), key=lambda kv: -kv[1][0]):
        rate = flops / (us * 1e-6)
        print(
            f"| {layer} | {us / args.steps / 1e3:.1f} | {flops / args.steps / 1e9:.2f} | "
            f"{rate / 1e9:.0f} | {rate / peak:.0%} |"
        )
    print(f"\ntop {args.top} ops:\n| op | source | shape | ms/step | GFLOP/s |")
    print("|---|---|---|---|---|")
    for name, us in busy.most_common(args.top):
        op = ops[name]
        rate = f"{op['flops'] * args.steps / (us * 1e-6) / 1e9:.0f}" if op["flops"] else ""
        print(f"| {name} | {op['source']} | {op['shape']} | {us / args.steps / 1e3:.2f} | {rate} |")


if __name__ == "__main__":
    main()
