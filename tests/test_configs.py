"""Every configs/*.py loads with each argument it accepts and rejects the others.

Pure Python: the configs import ml_collections only, so nothing here compiles.
"""

import importlib
import itertools
import pathlib

import pytest

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"
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
    "eval.classifier_steps",
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
    """Each accepted argument alone, then all of them together."""
    accepted = list(_module(name).ARGS)
    return [*accepted, ",".join(accepted)] if len(accepted) > 1 else accepted


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
    assert local["eval.samples_per_value"] <= 8 and local["eval.classifier_steps"] <= 50
    assert local["checkpoint_every_steps"] <= local["num_train_steps"]
    changed = {key for key in full if full[key] != local[key]}
    assert changed <= RUN_LENGTH_FIELDS, changed - RUN_LENGTH_FIELDS


def test_presets_combine_with_runlocal():
    mnist = _module("mnist")
    both = mnist.get_config("infogan,runlocal")
    assert both.data.num_labeled == 0 and both.loss.lambda_consistency == 1.0
    assert both.num_train_steps == mnist.get_config("runlocal").num_train_steps
    assert _flat(mnist.get_config("runlocal,infogan")) == _flat(both)


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
