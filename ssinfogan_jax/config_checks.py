"""Start-up validation of a whole config: one clear line per problem, naming the field.

The data set's checks (label counts, label names, code sizes against the data set's classes)
live with the data set registry (`data.registry.find_problems`); this module adds the rest and
collects everything into one `ConfigError`. Whether the data is present is checked when it is
loaded. `experiment.from_config` runs this once, at start-up.
"""

from __future__ import annotations

import difflib

import ml_collections

from configs import default as default_config
from ssinfogan_jax import latents, models
from ssinfogan_jax.data import registry


class ConfigError(ValueError):
    """The config cannot run; the message lists every problem found."""


def _unknown_fields(config, reference, prefix: str = "config") -> list[str]:
    """Fields present in `config` but not in the default config (misspelt keys)."""
    problems = []
    for key in config.keys():
        name = f"{prefix}.{key}"
        if key not in reference:
            close = difflib.get_close_matches(key, list(reference.keys()), n=1)
            hint = f"; did you mean {prefix}.{close[0]}?" if close else ""
            problems.append(f"{name}: unknown field{hint}")
        elif isinstance(config[key], ml_collections.ConfigDict) and isinstance(
            reference[key], ml_collections.ConfigDict
        ):
            problems += _unknown_fields(config[key], reference[key], name)
    return problems


def _positive(config, names: tuple[str, ...], allow_zero: bool = False) -> list[str]:
    problems = []
    for name in names:
        value = config
        for part in name.split("."):
            value = value[part]
        if value < 0 or (value == 0 and not allow_zero):
            bound = "non-negative" if allow_zero else "positive"
            problems.append(f"config.{name}: {value} must be {bound}")
    return problems


def find_problems(
    config: ml_collections.ConfigDict, process_count: int = 1, device_count: int = 1
) -> list[str]:
    """Every problem of the config, one line each; [] when it can run.

    The global batch must split evenly over `process_count` processes and `device_count`
    devices.
    """
    problems = _unknown_fields(config, default_config.get_config())
    if problems:  # Later checks would trip over the same misspelling.
        return problems
    if config.model.arch not in models.ARCHITECTURES:
        known = sorted(models.ARCHITECTURES)
        problems.append(
            f"config.model.arch: unknown architecture {config.model.arch!r}; known: {known}"
        )
    try:
        latents.LatentLayout.from_config(config.latents)
    except (ValueError, KeyError, TypeError) as e:
        problems.append(str(e) if str(e).startswith("latents") else f"config.latents: {e}")
    problems += _positive(config, ("batch_size", "num_train_steps", "log_every_steps"))
    problems += _positive(config, ("optimizer.g_learning_rate", "optimizer.d_learning_rate"))
    problems += _positive(
        config,
        (
            "checkpoint_every_steps",
            "eval_every_steps",
            "images_every_steps",
            "loss.lambda_ss_d",
            "loss.lambda_us_d",
            "loss.lambda_ss_g",
            "loss.lambda_us_g",
            "loss.q_ss_on_fakes_start",
            "loss.lambda_consistency",
            "loss.consistency_max_shift",
            "instance_noise.stddev",
        ),
        allow_zero=True,
    )
    if not 0.0 < config.instance_noise.decay <= 1.0:
        problems.append(
            f"config.instance_noise.decay: {config.instance_noise.decay} must be in (0, 1]"
        )
    if config.model.dtype not in ("float32", "bfloat16"):
        problems.append(
            f"config.model.dtype: {config.model.dtype!r}, expected 'float32' or 'bfloat16'"
        )
    if config.parallel not in ("auto", "jit", "pmap", "shard_map"):
        problems.append(
            f"config.parallel: {config.parallel!r}, expected 'auto', 'jit', 'pmap' or 'shard_map'"
        )
    if config.data.download not in registry.DOWNLOADS:
        problems.append(
            f"config.data.download: {config.data.download!r}, expected 'auto' (download with "
            f"tfds when not prepared) or 'never' (prepare offline)"
        )
    if config.sample.checkpoint not in ("latest", "best"):
        problems.append(
            f"config.sample.checkpoint: {config.sample.checkpoint!r}, expected 'latest' or 'best'"
        )
    data_problems = registry.find_problems(config, process_count, device_count)
    problems += data_problems
    if not data_problems and config.model.arch in models.ARCHITECTURES:
        info = registry.get_dataset_info(config)
        arch = models.get_architecture(config.model.arch)
        if (arch.image_shape, arch.image_range) != (info.image_shape, info.image_range):
            problems.append(
                f"config.model.arch: {config.model.arch} makes {arch.image_shape} images in "
                f"{arch.image_range}, but {info.name} has {info.image_shape} in {info.image_range}"
            )
        most = min(arch.image_shape[:2]) // 2
        if config.loss.lambda_consistency > 0 and config.loss.consistency_max_shift >= most:
            problems.append(
                f"config.loss.consistency_max_shift: {config.loss.consistency_max_shift} must "
                f"be below {most} pixels for {arch.image_shape[0]}x{arch.image_shape[1]} images"
            )
    return problems


def validate(
    config: ml_collections.ConfigDict, process_count: int = 1, device_count: int = 1
) -> None:
    """Raises ConfigError listing every problem, or returns if the config can run."""
    problems = find_problems(config, process_count, device_count)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
