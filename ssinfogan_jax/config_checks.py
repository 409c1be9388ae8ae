"""Start-up validation of a whole config: one clear line per problem, naming the field.

The data set's checks (label counts, label names, code sizes against the data set's classes)
live with the data set registry (`data.registry.find_problems`); this module adds the rest and
collects everything into one `ConfigError`. Whether the data is present is checked when it is
loaded. `experiment.from_config` runs this once, at start-up.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from ssinfogan_jax import default_config, latents, layers, models
from ssinfogan_jax.data import registry


class ConfigError(ValueError):
    """The config cannot run; the message lists every problem found."""


# What a resumed run (and eval or sample on a run) may change against the work dir's
# config.json: cadences, lengths, paths and evaluation settings, which leave the trained state
# and the data it was trained on as they were. A field name, or a prefix ending in '.'.
MAY_CHANGE_ON_RESUME = (
    "num_train_steps",
    "steps_per_dispatch",
    "log_every_steps",
    "log_grad_norms",
    "checkpoint_every_steps",
    "max_checkpoints_to_keep",
    "eval_every_steps",
    "images_every_steps",
    "parallel",
    "compilation_cache_dir",
    "tensorboard_dir",
    "data.data_dir",
    "data.raw_dir",
    "data.download",
    "data.prefetch",
    "eval.",
    "sample.",
)


def record(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON data (what the work dir's config.json holds)."""
    return json.loads(config.to_json_best_effort())


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _may_change(name: str) -> bool:
    return any(
        name == field or (field.endswith(".") and name.startswith(field))
        for field in MAY_CHANGE_ON_RESUME
    )


def compare_with_saved(saved: dict, config: ml_collections.ConfigDict) -> tuple[dict, list[str]]:
    """Compares a config with the work dir's saved one (`record` of it).

    Returns ({field: [saved, new]} of the changes allowed on resume, ["config.x: a -> b", ...]
    for every other difference). A field the saved record lacks (added to the project since)
    counts as unchanged when it has its default value, and as an allowed change from None when
    it may change on resume; one only the record has is ignored. A renamed field is read under
    its new name (default_config.RENAMED_FIELDS), so an older run's record still resumes.
    """
    old, new = _flatten(saved), _flatten(record(config))
    old = {default_config.RENAMED_FIELDS.get(name, name): value for name, value in old.items()}
    defaults = _flatten(record(default_config.get_config()))
    allowed, problems = {}, []
    for name, value in new.items():
        if name not in old:
            if name in defaults and value == defaults[name]:
                continue
            before = "(absent)"
        elif old[name] == value:
            continue
        else:
            before = json.dumps(old[name])
        if _may_change(name):
            allowed[name] = [old.get(name), value]
        else:
            problems.append(f"config.{name}: {before} -> {json.dumps(value)}")
    return allowed, problems


def _unknown_fields(config, reference, prefix: str = "config") -> list[str]:
    """Fields present in `config` but not in the default config (misspelt keys)."""
    problems = []
    for key in config.keys():
        name = f"{prefix}.{key}"
        if key not in reference:
            renamed = default_config.RENAMED_FIELDS.get(name.removeprefix("config."))
            close = difflib.get_close_matches(key, list(reference.keys()), n=1)
            if renamed:
                problems.append(f"{name}: renamed; use config.{renamed}")
                continue
            hint = f"; did you mean {prefix}.{close[0]}?" if close else ""
            problems.append(f"{name}: unknown field{hint}")
        elif isinstance(config[key], ml_collections.ConfigDict) and isinstance(
            reference[key], ml_collections.ConfigDict
        ):
            problems += _unknown_fields(config[key], reference[key], name)
    return problems


def _get(config, name: str):
    value = config
    for part in name.split("."):
        value = value[part]
    return value


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


# Numeric fields and their valid ranges: (name, low, high, low excluded, high excluded, integer).
# None is unbounded. Fields checked elsewhere (the data set's, by `registry.find_problems`;
# `latents.*` by `latents.LatentLayout`) are listed in `CHECKED_ELSEWHERE`.
RANGES = (
    ("seed", 0, 2**32, False, True, True),
    ("data.labeled_seed", 0, 2**32, False, True, True),
    ("data.test_share", 0.0, 1.0, False, True, False),
    ("data.labeled_max_rotation", 0.0, 180.0, False, False, False),
    ("data.labeled_max_scale", 0.0, 1.0, False, True, False),
    ("model.q_ss_dropout", 0.0, 1.0, False, True, False),
    ("latents.continuous_range", 0.0, None, True, True, False),
    ("loss.lambda_ss_d", 0.0, None, False, True, False),
    ("loss.lambda_us_d", 0.0, None, False, True, False),
    ("loss.lambda_ss_g", 0.0, None, False, True, False),
    ("loss.lambda_us_g", 0.0, None, False, True, False),
    ("loss.q_ss_on_fakes_start", 0, None, False, True, True),
    ("loss.lambda_consistency", 0.0, None, False, True, False),
    ("loss.consistency_max_shift", 0, None, False, True, True),
    ("loss.q_ss_max_shift", 0, None, False, True, True),
    ("optimizer.g_learning_rate", 0.0, None, True, True, False),
    ("optimizer.d_learning_rate", 0.0, None, True, True, False),
    ("optimizer.q_ss_learning_rate", 0.0, None, False, True, False),
    ("optimizer.g_ema_decay", 0.0, 1.0, False, True, False),
    ("optimizer.b1", 0.0, 1.0, False, True, False),
    ("optimizer.b2", 0.0, 1.0, False, True, False),
    ("optimizer.eps", 0.0, None, True, True, False),
    ("instance_noise.stddev", 0.0, None, False, True, False),
    ("instance_noise.decay", 0.0, 1.0, True, False, False),
    ("num_train_steps", 1, None, False, True, True),
    ("steps_per_dispatch", 1, None, False, True, True),
    ("log_every_steps", 1, None, False, True, True),
    ("checkpoint_every_steps", 1, None, False, True, True),
    ("max_checkpoints_to_keep", 1, None, False, True, True),
    ("eval_every_steps", 0, None, False, True, True),
    ("images_every_steps", 0, None, False, True, True),
    ("eval.samples_per_value", 1, None, False, True, True),
    ("eval.judge_steps", 1, None, False, True, True),
    ("eval.judge_batch_size", 1, None, False, True, True),
    ("eval.judge_seed", 0, 2**32, False, True, True),
    ("eval.judge_max_shift", -1.0, None, False, True, False),
    ("eval.judge_ensemble", 1, None, False, True, True),
    ("sample.per_value", 1, None, False, True, True),
    ("sample.traversal_rows", 1, None, False, True, True),
    ("sample.traversal_values", 2, None, False, True, True),
)

# Choices among fixed words: (name, accepted values).
CHOICES = (
    ("data.download", registry.DOWNLOADS),
    ("model.dtype", ("float32", "bfloat16")),
    ("model.conv_impl", layers.CONV_IMPLS),
    ("model.q_ss_trunk", models.Q_SS_TRUNKS),
    ("parallel", ("auto", "jit", "pmap", "shard_map")),
    ("sample.checkpoint", ("latest", "best")),
)

# Fields checked elsewhere, and where (tests/test_config_checks.py holds every field of
# configs/default.py to a check that fires, or to a reason in UNCHECKED).
CHECKED_ELSEWHERE = {
    "data.name": "registry.find_problems: a known data set or a tfds name (with 'did you mean')",
    "data.num_labeled": "registry.find_problems: -1, 0 or up to the train split's size; the "
    "stratified count here",
    "data.labeled_fraction": "registry.find_problems: in [0, 1]",
    "data.labeled_selection": "registry.find_problems: one of labeled_subset.SELECTIONS",
    "data.batch_mode": "registry.find_problems: one of sampler.MODES",
    "data.p_labeled_start": "registry.find_problems: in [0, 1]",
    "data.p_labeled_step": "registry.find_problems: in [0, 1]",
    "data.p_labeled_every": "registry.find_problems: >= 1",
    "data.p_labeled_final": "registry.find_problems: -1 or in [0, 1]",
    "data.mix_labeled_share": "registry.find_problems: in [0, 1]",
    "data.labeled_max_shift": "registry.find_problems: below half the image size",
    "data.prefetch": "registry.find_problems: >= 0",
    "data.celeba_attributes": "registry.find_problems (celeb_a only): CelebA's attribute names",
    "data.celeba_crop": "registry.find_problems (celeb_a only): inside the 218x178 images",
    "batch_size": "registry.find_problems: a positive multiple of the processes and devices",
    "latents.codes": "latents.LatentLayout: unique names, known kinds, sizes; "
    "registry.find_problems: labels and class counts",
    "latents.noise_size": "latents.LatentLayout: >= 0",
    "latents.noise_distribution": "latents.LatentLayout: one of NOISE_DISTRIBUTIONS",
    "model.arch": "find_problems: a known architecture whose images fit the data set",
}

# Fields with no check at start-up, and why.
UNCHECKED = {
    "runs": "sweep.run_configs: field=value overrides; each run's config is checked as a run's",
    "data.images_dir": "name = 'folder' only: a path; its images are checked (missing, "
    "unreadable, mixed modes, unlisted) when the folder is read, before anything is written",
    "data.labels_csv": "name = 'folder' only: a path; its columns and cells are checked when "
    "the folder is read (unknown columns, labels with fewer than 2 classes)",
    "data.label_kinds": "name = 'folder' only: checked against the CSV's columns when it is read",
    "data.label_classes": "name = 'folder' only: checked against the CSV's classes when it is read",
    "data.unlisted_images": "name = 'folder' only: registry.find_problems checks the choice there",
    "latents.codes_from_data": "a bool (ml_collections enforces the type): one code per "
    "column of a folder's CSV",
    "loss.q_ss_on_fakes": "None, True or False; ml_collections enforces the type",
    "loss.q_ss_recolour": "a bool (ml_collections enforces the type); find_problems checks "
    "that Q_ss has a trunk of its own",
    "data.data_dir": "a path: whether the data is there is checked when it loads",
    "data.raw_dir": "a path: whether its files are there is checked when the data loads",
    "eval.judge_dir": "a path: read or created when the judge is first needed",
    "log_grad_norms": "a bool (ml_collections enforces the type)",
    "data.labeled_restroke": "a bool (ml_collections enforces the type)",
    "model.d_batch_norm": "a bool (ml_collections enforces the type)",
    "compilation_cache_dir": "a path ('' = off): created when the cache is enabled",
    "tensorboard_dir": "a path ('' = the work dir): created by the TensorBoard writer",
    "best_metric": "an eval metric name ('' = none); the names depend on the codes, so an "
    "unknown one is reported (a warning) at the first evaluation",
}


def _range_problems(config) -> list[str]:
    problems = []
    for name, lo, hi, lo_open, hi_open, integer in RANGES:
        value = _get(config, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"config.{name}: {value!r} is not a number")
            continue
        if integer and value != int(value):
            problems.append(f"config.{name}: {value} is not a whole number")
            continue
        inside = math.isfinite(value)
        if lo is not None:
            inside = inside and (value > lo if lo_open else value >= lo)
        if hi is not None:
            inside = inside and (value < hi if hi_open else value <= hi)
        if not inside:
            problems.append(
                f"config.{name}: {value} is not in {_interval(lo, hi, lo_open, hi_open)}"
            )
    for name, accepted in CHOICES:
        value = _get(config, name)
        if value not in accepted:
            problems.append(f"config.{name}: {value!r}, expected one of {', '.join(accepted)}")
    return problems


def _dispatch_problems(config) -> list[str]:
    """With k steps per call, the loop acts between calls only: its cadences are multiples of k."""
    k = config.steps_per_dispatch
    if not isinstance(k, int) or k <= 1:
        return []
    fields = ("log_every_steps", "checkpoint_every_steps", "eval_every_steps", "images_every_steps")
    bad = [f"{f}={config[f]}" for f in fields if isinstance(config[f], int) and config[f] % k]
    if not bad:
        return []
    return [
        f"config.steps_per_dispatch: {k} steps per call, but {', '.join(bad)} "
        f"{'is' if len(bad) == 1 else 'are'} not a multiple of {k}; use multiples of {k} "
        "(0 = only at the end) or a smaller steps_per_dispatch"
    ]


def _stratification_problem(config, spec: registry.DataSpec, num_labeled: int) -> list[str]:
    """Stratified selection with fewer labels than classes leaves classes without any."""
    d = config.data
    if d.labeled_selection != "stratified":
        return []
    n = num_labeled
    label = next(
        (c.label for c in config.latents.codes if c.get("label") and spec.labels.get(c.label)),
        next((name for name, k in spec.labels.items() if k), None),
    )
    classes = spec.labels.get(label, 0) if label else 0
    if 0 < n < classes:
        return [
            f"config.data.num_labeled: {n} stratified labels cannot cover the {classes} classes "
            f"of {label!r} ({classes - n} would have none); use at least {classes}, 0 for "
            "none, or labeled_selection='random'"
        ]
    return []


def _aval_bytes(aval) -> int:
    return int(math.prod(aval.shape)) * jnp.dtype(aval.dtype).itemsize if aval.shape else 0


# The primitives whose outputs a backward pass keeps whatever XLA fuses: the layers' outputs.
_LAYER_PRIMITIVES = ("conv_general_dilated", "dot_general")


def _intermediate_bytes(jaxpr) -> int:
    """The bytes of the layer outputs a jaxpr computes (sub-jaxprs included): what a forward
    pass keeps for the backward one, at least."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in _LAYER_PRIMITIVES:
            total += sum(_aval_bytes(v.aval) for v in eqn.outvars)
        for param in eqn.params.values():
            for sub in param if isinstance(param, list | tuple) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += _intermediate_bytes(inner)
    return total


@functools.lru_cache(maxsize=32)
def network_bytes(arch: str, layout: latents.LatentLayout, model: tuple) -> tuple[int, int]:
    """(bytes of G's and D's variables, bytes of a forward pass of G then D per example),
    from shapes alone: nothing is allocated or compiled."""
    generator, discriminator = models.create_models(arch, layout, None, *model)
    shape = models.get_architecture(arch).image_shape
    z = jax.ShapeDtypeStruct((1, layout.input_size), jnp.float32)
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    key = jax.random.key(0)
    g_vars = jax.eval_shape(functools.partial(generator.init, train=False), key, z)
    d_vars = jax.eval_shape(functools.partial(discriminator.init, train=False), key, x)
    variables = sum(_aval_bytes(v) for v in jax.tree.leaves((g_vars, d_vars)))

    def forward(g_vars, d_vars, z):
        return discriminator.apply(d_vars, generator.apply(g_vars, z, train=False), train=False)

    jaxpr = jax.make_jaxpr(forward)(g_vars, d_vars, z)
    return variables, _intermediate_bytes(jaxpr.jaxpr)


def device_memory() -> tuple[int | None, str]:
    """(bytes one device can hold, what it is): the accelerator's limit, else the host's RAM
    (the CPU backend); None where neither is known."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"the {device.device_kind}'s memory"
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None, "unknown"
    return int(ram), "this machine's RAM"


def _memory_problem(config, device_count: int) -> list[str]:
    """A config whose train step cannot fit one device, from an estimate that errs low: the
    networks' variables and Adam's two moments (3x; gradients not counted), plus the layer
    outputs of one forward pass of G and D per example of the device's share of the batch
    (the step keeps more: D sees reals and fakes, and the backward pass its own). On the CPU,
    digits' step (infogan_mnist) is estimated at 170 MB for a batch of 32 and 242 MB for 256,
    where XLA's memory analysis of the compiled step says 182 MB and 329 MB."""
    limit, where = device_memory()
    if limit is None:
        return []
    m = config.model
    model = (m.dtype, m.conv_impl, m.d_batch_norm, m.q_ss_trunk)
    layout = latents.LatentLayout.from_config(config.latents)
    variables, per_example = network_bytes(m.arch, layout, model)
    per_device = -(-int(config.batch_size) // max(device_count, 1))
    state, activations = 3 * variables, per_example * per_device
    if state + activations <= limit:
        return []
    gib = 2**30
    if state > limit:
        return [
            f"config.latents.noise_size: G and D hold {variables / 4e6:,.0f}M numbers for "
            f"these latents (noise_size={config.latents.noise_size}), {state / gib:,.1f} GiB "
            f"with Adam's moments, more than {where} ({limit / gib:,.1f} GiB); "
            "use a smaller latents.noise_size or fewer codes"
        ]
    return [
        f"config.batch_size: a train step of {config.batch_size} examples ({per_device} per "
        f"device) needs at least {(state + activations) / gib:,.1f} GiB "
        f"({activations / gib:,.1f} GiB of activations), more than {where} "
        f"({limit / gib:,.1f} GiB); use a batch_size of at most "
        f"{max(int((limit - state) // per_example), 1) * max(device_count, 1):,}"
    ]


def find_problems(
    config: ml_collections.ConfigDict,
    process_count: int = 1,
    device_count: int = 1,
    *,
    spec: registry.DataSpec | None = None,
    num_labeled: int | None = None,
    data_problems: Sequence[str] = (),
) -> list[str]:
    """Every problem of the config, one line each; [] when it can run.

    The global batch must split evenly over `process_count` processes and `device_count`
    devices. `spec` and `num_labeled` are the data's (experiment.find_problems resolves them;
    `data_problems`: why they could not be); without a spec the data is not checked.
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
        problems.append(f"config.{e}" if str(e).startswith("latents") else f"config.latents: {e}")
    problems += _range_problems(config)
    problems += _dispatch_problems(config)
    if config.loss.q_ss_max_shift and config.model.q_ss_trunk != "own":
        problems.append(
            "config.loss.q_ss_max_shift: translates what Q_ss reads only with "
            "model.q_ss_trunk='own' (with the shared trunk, data.labeled_max_shift translates "
            "the labelled examples for D and Q_ss alike)"
        )
    if config.loss.q_ss_recolour and config.model.q_ss_trunk != "own":
        problems.append(
            "config.loss.q_ss_recolour: recolours what Q_ss reads only with "
            "model.q_ss_trunk='own' (the shared trunk reads what D reads)"
        )
    problems += data_problems
    if spec is None:
        return problems
    found = registry.find_problems(config, spec, num_labeled or 0, process_count, device_count)
    problems += found
    if not found and num_labeled is not None:
        problems += _stratification_problem(config, spec, num_labeled)
    if not found and config.model.arch in models.ARCHITECTURES:
        arch = models.get_architecture(config.model.arch)
        if (arch.image_shape, arch.image_range) != (spec.image_shape, spec.image_range):
            problems.append(
                f"config.model.arch: {config.model.arch} makes {arch.image_shape} images in "
                f"{arch.image_range}, but {spec.name} has {spec.image_shape} in {spec.image_range}"
            )
        most = min(arch.image_shape[:2]) // 2
        used_shifts = (
            ("consistency_max_shift", config.loss.lambda_consistency > 0),
            ("q_ss_max_shift", True),
        )
        for name, used in used_shifts:
            if used and config.loss[name] >= most:
                problems.append(
                    f"config.loss.{name}: {config.loss[name]} must be below {most} pixels "
                    f"for {arch.image_shape[0]}x{arch.image_shape[1]} images"
                )
    if not problems:  # Last: it traces the networks, which needs every other field right.
        problems += _memory_problem(config, device_count)
    return problems
