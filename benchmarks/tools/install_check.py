"""Does the package's requirement set install on the platforms users run? Asks the resolvers.

For Linux x86-64, Linux aarch64 and macOS arm64 (CPython 3.11, wheels only), with and without
`constraints.txt`, it runs

- pip: `pip install --dry-run --only-binary=:all: --platform ... --python-version 3.11
  --implementation cp --target <tmp> --report`. pip evaluates environment markers for the
  machine it runs on, not for `--platform`, so the package's own markers (the TensorFlow
  choice) are evaluated here for the target platform before the requirements are handed to
  pip; markers deeper in the tree (tfds's `array_record; platform_system == "Linux"`) are still
  this machine's, which can make the macOS row fail for a reason a Mac would not have;
- uv (if installed): `uv pip compile --python-platform ... --only-binary :all:`, which
  evaluates every marker for the target platform.

and prints one table row per resolver, platform and constraint setting: resolved or the error
line, and the versions of jax, jaxlib, tensorflow(-cpu) and tensorflow-datasets.

    python -m benchmarks.tools.install_check            # the table (needs PyPI, ~1-3 min)
    python -m benchmarks.tools.install_check --extras=test,tpu
    python -m benchmarks.tools.install_check --freeze > constraints.txt   # regenerate the pins

`--freeze` writes the exact versions installed in the running environment of everything that
the package and its [test] extra pull in (a filtered `pip freeze`), with the TensorFlow line
split by the same platform marker as setup.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from unittest import mock

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from benchmarks import common

CONSTRAINTS = os.path.join(common.REPO, "constraints.txt")
PYTHON_VERSION = "3.11"
# Pure-Python dependencies published as source only (tfds needs `promise`): built into wheels
# once, here, and offered to the resolvers with --find-links, as a real install would build them.
SDIST_ONLY = ("promise",)
SHOWN = ("jax", "jaxlib", "tensorflow", "tensorflow-cpu", "tensorflow-datasets")


# glibc 2.35 (Ubuntu 22.04, the TPU VM images) and macOS 14. pip takes --platform tags literally
# (no older manylinux or macOS versions implied), so every compatible tag is listed.
def _manylinux(arch: str) -> list[str]:
    return [f"manylinux_2_{v}_{arch}" for v in range(35, 16, -1)] + [f"manylinux2014_{arch}"]


def _macos() -> list[str]:
    return [f"macosx_{v}_0_{a}" for v in range(14, 10, -1) for a in ("arm64", "universal2")]


# name: (pip --platform tags, uv --python-platform, marker environment)
PLATFORMS = {
    "linux-x86_64": (
        _manylinux("x86_64"),
        "x86_64-manylinux_2_35",
        {"sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux"},
    ),
    "linux-aarch64": (
        _manylinux("aarch64"),
        "aarch64-manylinux_2_35",
        {"sys_platform": "linux", "platform_machine": "aarch64", "platform_system": "Linux"},
    ),
    "macos-arm64": (
        _macos(),
        "aarch64-apple-darwin",
        {"sys_platform": "darwin", "platform_machine": "arm64", "platform_system": "Darwin"},
    ),
}


def package_requirements() -> tuple[list[str], dict[str, list[str]]]:
    """(install_requires, extras_require) exactly as setup.py declares them."""
    with mock.patch("setuptools.setup") as setup:
        runpy.run_path(os.path.join(common.REPO, "setup.py"))
    kwargs = setup.call_args.kwargs
    return list(kwargs["install_requires"]), dict(kwargs["extras_require"])


def requirements_for(extras: list[str]) -> list[str]:
    install, extra_map = package_requirements()
    return install + [r for e in extras for r in extra_map[e]]


def _marker_env(platform: str) -> dict[str, str]:
    env = {"python_version": PYTHON_VERSION, "python_full_version": f"{PYTHON_VERSION}.0"}
    env.update({"implementation_name": "cpython", "platform_python_implementation": "CPython"})
    env["os_name"] = "posix"
    env.update(PLATFORMS[platform][2])
    return env


def _strip_markers(requirements: list[str], platform: str) -> list[str]:
    """The requirements that apply on `platform`, without their markers (pip's input)."""
    out = []
    env = _marker_env(platform)
    for line in requirements:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            out.append(str(req))
    return out


def _first_error(text: str) -> str:
    """The line that says why, not pip's preamble about ignored versions."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    for pattern in (r"^cause:|no matching distribution|conflicting|has no wheels", r"error"):
        for line in lines:
            if re.search(pattern, line, re.I) and "Ignored the following" not in line:
                return line[:120]
    return (lines[-1] if lines else "failed")[:120]


def build_sdist_only_wheels(wheel_dir: str) -> None:
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheel_dir]
    subprocess.run([*cmd, "-c", CONSTRAINTS, *SDIST_ONLY], check=True, capture_output=True)


def run_pip(
    platform: str, requirements: list[str], constraints: bool, wheels: str
) -> tuple[bool, dict, str]:
    tags = PLATFORMS[platform][0]
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        cmd += ["--only-binary=:all:", "--python-version", PYTHON_VERSION]
        cmd += ["--implementation", "cp", "--target", os.path.join(tmp, "t")]
        cmd += ["--report", report, "-q", "--find-links", wheels]
        for tag in tags:
            cmd += ["--platform", tag]
        if constraints:
            cmd += ["-c", CONSTRAINTS]
        env = dict(os.environ, PIP_CONSTRAINT="")  # only our constraints, not the machine's
        result = subprocess.run(
            cmd + _strip_markers(requirements, platform), capture_output=True, text=True, env=env
        )
        if result.returncode != 0:
            return False, {}, _first_error(result.stderr + result.stdout)
        with open(report) as f:
            items = json.load(f)["install"]
        versions = {
            canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in items
        }
        return True, versions, ""


def run_uv(
    platform: str, requirements: list[str], constraints: bool, wheels: str
) -> tuple[bool, dict, str]:
    uv = shutil.which("uv")
    cmd = [uv, "pip", "compile", "-", "--python-version", PYTHON_VERSION, "--no-header"]
    cmd += ["--python-platform", PLATFORMS[platform][1], "--only-binary", ":all:", "-q"]
    cmd += ["--no-annotate", "--no-config", "--find-links", wheels]
    if constraints:
        cmd += ["-c", CONSTRAINTS]
    result = subprocess.run(cmd, input="\n".join(requirements), capture_output=True, text=True)
    if result.returncode != 0:
        return False, {}, _first_error(result.stderr + result.stdout)
    versions = {}
    for line in result.stdout.splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            versions[canonicalize_name(name.strip())] = version.split(";")[0].strip()
    return True, versions, ""


def freeze(extras: list[str]) -> str:
    """The installed versions of the requirement closure of the package and `extras`."""
    seen: dict[str, str] = {}
    todo = [(Requirement(r), ()) for r in requirements_for(extras)]
    while todo:
        req, parent_extras = todo.pop()
        envs = [{"extra": e} for e in parent_extras] or [{"extra": ""}]
        if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
            continue
        name = canonicalize_name(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # e.g. tensorflow on x86-64 Linux, where tensorflow-cpu stands in.
        key = (name, tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen[key] = dist.version
        todo += [(Requirement(r), tuple(req.extras)) for r in dist.requires or []]
    pins = {}
    for (name, _), version in seen.items():
        pins[name] = version
    lines = [
        "# The exact versions CI tests (Python 3.11): everything `ssinfogan_jax[test]` pulls in.",
        "# Use: pip install -c constraints.txt -e '.[test]'",
        "# Regenerate from a working environment:"
        " python -m benchmarks.tools.install_check --freeze",
    ]
    tf_cpu = 'sys_platform == "linux" and platform_machine == "x86_64"'
    tf_elsewhere = 'sys_platform != "linux" or platform_machine != "x86_64"'
    for name in sorted(pins):
        if name == "tensorflow-cpu":
            lines.append(f"tensorflow-cpu=={pins[name]} ; {tf_cpu}")
            lines.append(f"tensorflow=={pins[name]} ; {tf_elsewhere}")
        else:
            lines.append(f"{name}=={pins[name]}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extras", default="", help="comma-separated extras, e.g. test,tpu")
    parser.add_argument("--freeze", action="store_true", help="print constraints.txt and exit")
    args = parser.parse_args()
    extras = [e for e in args.extras.split(",") if e]
    if args.freeze:
        sys.stdout.write(freeze(extras or ["test"]))
        return 0

    requirements = requirements_for(extras)
    resolvers = [("pip", run_pip)] + ([("uv", run_uv)] if shutil.which("uv") else [])
    print(
        f"ssinfogan_jax{'[' + ','.join(extras) + ']' if extras else ''}, CPython "
        f"{PYTHON_VERSION}, wheels only"
    )
    header = f"{'resolver':8} {'platform':14} {'constraints':11} result"
    print(header)
    print("-" * len(header))
    failures = 0
    wheels = tempfile.mkdtemp(prefix="install_check_wheels")
    build_sdist_only_wheels(wheels)
    for resolver, run in resolvers:
        for platform in PLATFORMS:
            for constraints in (False, True):
                ok, versions, error = run(platform, requirements, constraints, wheels)
                if ok:
                    shown = " ".join(f"{n}=={versions[n]}" for n in SHOWN if n in versions)
                    result = f"OK  {shown}"
                else:
                    failures += 1
                    result = f"FAIL {error}"
                flag = "yes" if constraints else "no"
                print(f"{resolver:8} {platform:14} {flag:11} {result}", flush=True)
    shutil.rmtree(wheels)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
