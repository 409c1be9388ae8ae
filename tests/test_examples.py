"""The scripts in examples/ run as a user runs them (a subprocess, outside the checkout, a few
steps each) and print what they promise; the README's research-code section is one of them,
verbatim; the README's and docs' links lead to files that exist."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 12  # Enough to run the loop, the judge and the evaluation; the accuracy means nothing.
ACCURACY = re.compile(r"^cond_acc_direct: ([0-9.]+)$", re.M)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A home of their own for the examples: tfds data, the judges' cache and the XLA cache
    go there, not into the user's ~ (shared by this file's tests: digits prepared once)."""
    return tmp_path_factory.mktemp("examples_home")


def _run(home, script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        HOME=str(home),
        TFDS_DATA_DIR=str(home / "tensorflow_datasets"),
        PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
    )
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), *args],
        cwd=home,  # Not the checkout: the examples find the shipped configs from anywhere.
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def _accuracy(stdout: str) -> float:
    (value,) = ACCURACY.findall(stdout)
    return float(value)


def test_custom_loop_trains_on_its_own_batches_and_is_judged(home):
    result = _run(home, "custom_loop.py", f"--steps={STEPS}")
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    match = re.fullmatch(r"step 0: d_loss (\S+) g_loss (\S+)", line)
    assert match, line
    assert all(np.isfinite(float(v)) and float(v) > 0 for v in match.groups()), line
    assert 0.0 <= _accuracy(result.stdout) <= 1.0
    assert result.stdout.splitlines()[-1].startswith("cond_acc_direct: ")


def test_train_on_arrays_uses_exactly_the_labels_given(home):
    from ssinfogan_jax.data import builders

    workdir = home / "arrays_run"
    result = _run(home, "train_on_arrays.py", f"--steps={STEPS}", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0.0 <= _accuracy(result.stdout) <= 1.0
    listing = result.stdout.splitlines()[-1]
    assert listing.startswith(f"{workdir}: ") and "checkpoints" in listing, listing
    rows = [json.loads(line) for line in (workdir / "eval_history.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == STEPS
    assert rows[-1]["cond_acc_direct"] == pytest.approx(_accuracy(result.stdout), abs=5e-4)
    # The labelled subset is the 100 examples the script left a label on (10 per class), no more.
    digits = builders.digits_arrays()["train"][1]
    given = np.concatenate([np.flatnonzero(digits == k)[:10] for k in range(10)])
    subset = json.loads((workdir / "labeled_subset.json").read_text())
    assert sorted(subset["indices_per_label"]["label"]) == sorted(given.tolist())
    assert subset["count_per_class"]["label"] == {str(k): 10 for k in range(10)}


def test_the_readme_research_code_section_is_the_custom_loop_verbatim():
    with open(os.path.join(ROOT, "examples", "custom_loop.py")) as f:
        example = f.read()
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert f"```python\n{example}```\n" in readme


LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.+)$", re.M)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize(
    "page",
    ["README.md", "benchmarks/README.md"]
    + [f"docs/{name}" for name in sorted(os.listdir(os.path.join(ROOT, "docs")))],
)
def test_every_relative_link_leads_to_a_file_and_heading(page):
    """Figures and histories moved between pages and folders: each link must still resolve, to
    a heading where it names one (docs/data.md, another engineer's page, may not exist yet)."""
    folder = os.path.dirname(os.path.join(ROOT, page))
    with open(os.path.join(ROOT, page)) as f:
        text = f.read()
    missing = []
    for target in LINK.findall(text):
        path, _, anchor = target.partition("#")
        if "://" in path:
            continue
        file = os.path.normpath(os.path.join(folder, path)) if path else os.path.join(ROOT, page)
        if not os.path.exists(file):
            if os.path.basename(file) != "data.md":
                missing.append(target)
            continue
        if anchor:
            with open(file) as f:
                anchors = {_anchor(h) for h in HEADING.findall(f.read())}
            if anchor not in anchors:
                missing.append(target)
    assert missing == []
