"""Every configs/*.py loads with each argument it accepts and rejects the others; a shipped
config runs by name from any directory, from a checkout and from a wheel; and each usage error
of `python -m ssinfogan_jax.main` is one line and exit 2, before TensorFlow and JAX load.

The configs import ml_collections only; the start-up checks import the package, but nothing
here compiles.
"""

import ast
import importlib
import itertools
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from ssinfogan_jax import default_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"
NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem != "__init__")
# What `runlocal` may change: how long the run is and how much it evaluates, nothing of the
# data, the model, the latents or the losses.
RUN_LENGTH_FIELDS = {
    "batch_size",
    "num_train_steps",
    "log_every_steps",
    "checkpoint_every_steps",
    "eval_every_steps",
    "images_every_steps",
    "eval.samples_per_value",
    "eval.judge_steps",
}


def _module(name: str):
    return importlib.import_module(f"configs.{name}")


def _flat(config, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if hasattr(value, "items"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _args(name: str) -> list[str]:
    """Each accepted argument alone, then all of them together (of the arguments a config
    declares EXCLUSIVE, the first only)."""
    module = _module(name)
    accepted = list(module.ARGS)
    exclusive = list(getattr(module, "EXCLUSIVE", ()))[1:]
    together = [arg for arg in accepted if arg not in exclusive]
    return [*accepted, ",".join(together)] if len(accepted) > 1 else accepted


def test_every_data_set_has_a_config():
    assert set(NAMES) >= {"default", "digits", "mnist", "svhn", "cifar10", "celeba"}


@pytest.mark.parametrize("name", NAMES)
def test_accepts_runlocal_and_documents_its_arguments(name):
    module = _module(name)
    assert "runlocal" in module.ARGS
    for arg in module.ARGS:
        assert f"`{arg}`" in module.__doc__, f"configs/{name}.py's docstring omits {arg!r}"
    assert f"--config=configs/{name}.py" in module.__doc__  # The launch command.


@pytest.mark.parametrize("name", NAMES)
def test_loads_with_no_argument_and_with_each_accepted_one(name):
    module = _module(name)
    default_fields = set(_flat(_module("default").get_config()))
    for arg in [None, "", *_args(name)]:
        config = module.get_config(arg)
        assert set(_flat(config)) == default_fields, (name, arg)  # No field added or lost.
    assert _flat(module.get_config()) == _flat(module.get_config(None))


@pytest.mark.parametrize("name", NAMES)
def test_runlocal_is_a_short_run_of_the_same_experiment(name):
    module = _module(name)
    full, local = _flat(module.get_config()), _flat(module.get_config("runlocal"))
    assert local["num_train_steps"] <= 10 < full["num_train_steps"]
    assert local["eval.samples_per_value"] <= 8 and local["eval.judge_steps"] <= 50
    assert local["checkpoint_every_steps"] <= local["num_train_steps"]
    changed = {key for key in full if full[key] != local[key]}
    assert changed <= RUN_LENGTH_FIELDS, changed - RUN_LENGTH_FIELDS


@pytest.mark.parametrize("name", NAMES)
def test_each_preset_and_each_of_its_runs_passes_the_start_up_checks(name):
    # The checks that need no data: a preset whose cadences do not fit its steps per call
    # would stop at start-up with exit 2.
    from ssinfogan_jax import config_checks, sweep

    module = _module(name)
    for arg in [None, *_args(name)]:
        config = module.get_config(arg)
        runs = sweep.run_configs(config) if config.runs else {"": config}
        for run, run_config in runs.items():
            assert config_checks.find_problems(run_config) == [], (name, arg, run)


def test_presets_combine_with_runlocal():
    mnist = _module("mnist")
    both = mnist.get_config("infogan,runlocal")
    assert both.data.num_labeled == 0 and both.loss.lambda_consistency == 1.0
    assert both.num_train_steps == mnist.get_config("runlocal").num_train_steps
    assert _flat(mnist.get_config("runlocal,infogan")) == _flat(both)


def test_one_per_class_is_the_mnist_recipe_with_ten_varied_labels_judged_at_each_thousand():
    mnist = _module("mnist")
    recipe, preset = _flat(mnist.get_config()), _flat(mnist.get_config("one_per_class"))
    assert preset["data.num_labeled"] == 10 and preset["data.labeled_selection"] == "stratified"
    assert preset["num_train_steps"] == 3_000 and preset["eval_every_steps"] == 1_000
    assert preset["eval.samples_per_value"] == 1_024
    # Every evaluated step has a checkpoint, and none is deleted by the end of the run.
    assert preset["eval_every_steps"] % preset["checkpoint_every_steps"] == 0
    kept = preset["max_checkpoints_to_keep"] * preset["checkpoint_every_steps"]
    assert kept >= preset["num_train_steps"]
    changed = {key for key in recipe if recipe[key] != preset[key]}
    varied = {"data.labeled_max_rotation", "data.labeled_max_scale", "data.labeled_restroke"}
    assert varied <= changed and all(preset[key] for key in varied)  # The labelled digits only.
    assert changed <= RUN_LENGTH_FIELDS | varied | {"data.num_labeled", "max_checkpoints_to_keep"}
    local = mnist.get_config("one_per_class,runlocal")
    assert local.data.num_labeled == 10 and local.num_train_steps <= 10


def test_celeba_64_is_the_same_run_with_dcgans_64x64_nets():
    celeba = _module("celeba")
    for suffix in ("", ",runlocal"):
        base, big = _flat(celeba.get_config(suffix[1:])), _flat(celeba.get_config("64" + suffix))
        changed = {key: big[key] for key in base if base[key] != big[key]}
        # Q_ss's random shift: 4 pixels at 64x64, the share of the image 2 are at 32x32.
        assert changed == {"model.arch": "dcgan_64", "loss.q_ss_max_shift": 4}
        assert base["loss.q_ss_max_shift"] == 2 and big["model.d_batch_norm"] is False


def test_folder_64_is_the_32x32_run_with_dcgans_64x64_nets_and_excludes_gray():
    folder = _module("folder")
    for suffix in ("", ",runlocal"):
        base, big = _flat(folder.get_config(suffix[1:])), _flat(folder.get_config("64" + suffix))
        changed = {key: big[key] for key in base if base[key] != big[key]}
        # The labelled examples' shift: 4 pixels at 64x64, the share of the image 2 are at 32.
        assert changed == {"model.arch": "dcgan_64", "data.labeled_max_shift": 4}
        assert base["data.labeled_max_shift"] == 2 and big["model.d_batch_norm"] is False
    with pytest.raises(ValueError, match=r"'gray' .* and '64' .* exclude each other"):
        folder.get_config("gray,64,runlocal")


@pytest.mark.parametrize("name, arg", list(itertools.product(NAMES, ["runloacl", "runlocal,big"])))
def test_unknown_arguments_raise_with_the_accepted_list(name, arg):
    module = _module(name)
    with pytest.raises(ValueError) as error:
        module.get_config(arg)
    message = str(error.value)
    assert message.startswith(f"configs/{name}.py: unknown argument")
    bad = [word for word in arg.split(",") if word not in module.ARGS]
    assert all(repr(word) in message for word in bad), message
    assert f"accepted: {', '.join(module.ARGS)}" in message


def test_the_library_imports_nothing_from_configs():
    """configs/ is the repository's and the wheel's copy of the shipped configs; the schema and
    the helpers they share live in ssinfogan_jax/default_config.py."""
    importers = []
    for path in (ROOT / "ssinfogan_jax").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            if any(name == "configs" or name.startswith("configs.") for name in names):
                importers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert importers == []


def test_a_shipped_config_is_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = f"{CONFIG_DIR / 'digits.py'}:runlocal"
    for name in ("digits", "digits.py", "configs/digits.py", "./configs/digits.py"):
        assert default_config.config_file(f"{name}:runlocal") == shipped, name
    assert default_config.config_file("mnist") == str(CONFIG_DIR / "mnist.py")
    assert default_config.shipped_names() == NAMES
    module = default_config.shipped_config("digits")
    assert _flat(module.get_config("runlocal")) == _flat(_module("digits").get_config("runlocal"))
    # A file at the given path, relative to the working directory, wins over the shipped one.
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "digits.py").write_text("")
    assert default_config.config_file("configs/digits.py:runlocal") == "configs/digits.py:runlocal"
    for missing in ("configs/nope.py", "nope", "other/digits.py", "/abs/digits.py", ""):
        with pytest.raises(FileNotFoundError, match="shipped: celeba, cifar10, default"):
            default_config.config_file(f"{missing}:runlocal")


def _main(*flags: str, cwd, env=None, wrapper: bool = False) -> subprocess.CompletedProcess:
    """`python -m ssinfogan_jax.main *flags`; with `wrapper`, the same through runpy, printing
    on stdout at exit which of TensorFlow and JAX it imported."""
    start = ["-m", "ssinfogan_jax.main"]
    if wrapper:
        start = ["-c", HEAVY_IMPORTS_AT_EXIT]
    return subprocess.run(
        [sys.executable, *start, *flags],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


HEAVY_IMPORTS_AT_EXIT = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: print(*[m for m in ('tensorflow', 'jax') if m in sys.modules]))\n"
    "runpy.run_module('ssinfogan_jax.main', run_name='__main__', alter_sys=True)\n"
)
# (flags, expected text of the one line). `{tmp}` is a fresh directory that is not the
# checkout; `{file}` a file in it. Every case also passes --workdir={tmp}/run unless it names
# its own --workdir (or none: "-").
USAGE_ERRORS = {
    "missing config file": (
        ["--config=configs/nope.py"],
        "FATAL config not found: no config file 'configs/nope.py' in {tmp}, and no shipped "
        "config of that name (shipped: celeba, cifar10, default, digit_scenes, digits, folder,",
    ),
    "unknown preset": (
        ["--config=configs/mnist.py:foo"],
        "FATAL config error: configs/mnist.py: unknown argument 'foo'; accepted: infogan, "
        "one_per_class, runlocal, sweep (comma-separated, e.g. configs/mnist.py:sweep)",
    ),
    "unknown preset, short form": (
        ["--config=digits:runlocal,big"],
        "FATAL config error: configs/digits.py: unknown argument 'big'; accepted: runlocal",
    ),
    "bad mode": (
        ["--config=digits", "--mode=bogus"],
        "FATAL bad flag --mode=bogus: value should be one of <train|eval|sample>",
    ),
    "float for an int": (
        ["--config=digits:runlocal", "--config.batch_size=1.5"],
        "FATAL bad flag --config.batch_size=1.5: invalid literal for int()",
    ),
    "word for an int": (
        ["--config=configs/mnist.py", "--config.batch_size=abc"],
        "FATAL bad flag --config.batch_size=abc: invalid literal for int()",
    ),
    "misspelt override": (
        ["--config=digits", "--config.batchsize=3"],
        """FATAL config error: 'batchsize' Did you mean "batch_size" instead of "batchsize"?""",
    ),
    "missing workdir": (
        ["--config=digits", "-"],
        "FATAL --workdir is required (Directory for checkpoints, logs and samples)",
    ),
    "missing config": (["--workdir={tmp}/run"], "FATAL --config is required (Config file"),
    "workdir is a file": (
        ["--config=digits", "--workdir={file}"],
        "FATAL --workdir={file} is a file, not a directory; pass a new or existing directory",
    ),
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_a_usage_error_is_one_line_and_exit_2_before_tensorflow_and_jax(case, tmp_path):
    flags, expected = USAGE_ERRORS[case]
    tmp, file = tmp_path / "elsewhere", tmp_path / "elsewhere" / "a_file"
    tmp.mkdir()
    file.write_text("not a directory\n")
    flags = [flag.format(tmp=tmp, file=file) for flag in flags]
    if not any(flag.startswith("--workdir") or flag == "-" for flag in flags):
        flags.append(f"--workdir={tmp}/run")
    flags = [flag for flag in flags if flag != "-"]
    # From the checkout (where configs/mnist.py is a path) and from elsewhere (where the
    # shipped copy answers), as a user runs it.
    for cwd in (ROOT, tmp):
        result = _main(*flags, cwd=cwd)
        assert result.returncode == 2, (cwd, result.stderr)
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(expected.format(tmp=cwd, file=file)), lines[0]
        assert sorted(p.name for p in tmp.iterdir()) == ["a_file"]  # No work dir made.
    heavy = _main(*flags, cwd=tmp, wrapper=True)
    assert heavy.returncode == 2 and heavy.stdout.split() == [], heavy.stdout


def test_a_wheel_installed_elsewhere_runs_its_shipped_configs_from_any_directory(tmp_path):
    """The wheel holds the configs as ssinfogan_jax/configs/ and no top-level `configs`."""
    source, dist, target, cwd = (tmp_path / name for name in ("src", "dist", "target", "cwd"))
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("ssinfogan_jax", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    offline = ["--no-deps", "--no-index"]
    subprocess.run(
        [*pip, "wheel", *offline, "--no-build-isolation", "-w", dist, source], check=True
    )
    (wheel,) = dist.glob("ssinfogan_jax-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {
        "ssinfogan_jax",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    assert {f"ssinfogan_jax/configs/{name}.py" for name in NAMES} <= set(names)
    subprocess.run([*pip, "install", *offline, "--target", target, wheel], check=True)
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = (
        "import ssinfogan_jax\n"
        "from ssinfogan_jax import default_config\n"
        "print(ssinfogan_jax.__file__)\n"
        "print(default_config.config_file('digits:runlocal'))\n"
        "config = default_config.shipped_config('digits').get_config('runlocal')\n"
        "print(config.data.name, config.num_train_steps)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    package = target / "ssinfogan_jax"
    assert result.stdout.splitlines() == [
        str(package / "__init__.py"),
        f"{package / 'configs' / 'digits.py'}:runlocal",
        "digits 6",
    ]
    # main finds the shipped file by name and by the repository's path, and runs it: its
    # own argument check answers, and its fields take overrides.
    for flags, expected in (
        (
            ["--config=digits:nope"],
            "FATAL config error: configs/digits.py: unknown argument 'nope'",
        ),
        (
            ["--config=configs/digits.py:runlocal", "--config.batch_size=abc"],
            "FATAL bad flag --config.batch_size=abc",
        ),
    ):
        result = _main(*flags, f"--workdir={cwd / 'run'}", cwd=cwd, env=env)
        assert result.returncode == 2 and result.stderr.startswith(expected), result.stderr
        assert len(result.stderr.splitlines()) == 1
