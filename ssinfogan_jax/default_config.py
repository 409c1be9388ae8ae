"""Every field of a run's config, with what it means, and the helpers the configs share.

The defaults are the reference ss-InfoGAN MNIST run (spurra/ss-infogan, configuration.lua):
batch 128, 5,000 iterations, Adam 1e-4 (D/Q) and 1e-3 (G) with beta1 0.5, lambda 2 / 0.8,
latents [c_ss 10-way | c_us 2 x U(-1, 1) | 62 x N(0, 1)], 600 labels. `configs/default.py` runs
them as they are; every other config in `configs/` starts from `get_config()` and overrides a
few fields, with `code`, `colour_32`, `own_q_ss`, `colour_blind_q_ss` and `runlocal`.

`configs/` is installed inside the package, as `ssinfogan_jax/configs/` (setup.py), so that
`--config=celeba` finds a shipped config from any directory: `config_file` resolves it.
"""

import importlib.resources
import importlib.util
import os
import pathlib
import types
from collections.abc import Sequence

import ml_collections

ARGS = ("runlocal",)


def code(name: str, kind: str, size: int, label: str = "") -> ml_collections.ConfigDict:
    """One latent code; `label` names the data set label that supervises it ('' = free)."""
    return ml_collections.ConfigDict(dict(name=name, kind=kind, size=size, label=label))


def parse_arg(source: str, arg: str | None, accepted: Sequence[str]) -> frozenset[str]:
    """The words of a config argument (`--config=configs/x.py:a,b` gives 'a,b').

    Raises ValueError naming `source` and the accepted words if any word is not accepted.
    """
    words = [word.strip() for word in (arg or "").split(",") if word.strip()]
    unknown = [word for word in words if word not in accepted]
    if unknown:
        raise ValueError(
            f"{source}: unknown argument {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(accepted)} (comma-separated, e.g. {source}:{accepted[-1]})"
        )
    return frozenset(words)


def colour_32(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The 32x32 colour net: DCGAN's generator (`dcgan_32`) and no batch norm in D's trunk, and
    a moving average of G (decay 0.999), which is what gets judged and sampled.

    With `infogan_32` and D's batch norm G ignores its noise (it collapses); with these its
    samples keep their spread, and the average holds the codes where G's own weights swing from
    evaluation to evaluation. The measurements: docs/digit_scenes.md.
    """
    config.model.arch = "dcgan_32"
    config.model.d_batch_norm = False
    config.optimizer.g_ema_decay = 0.999
    return config


def own_q_ss(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Q_ss on a trunk of its own that reads the reals shifted by up to 2 pixels (D does not),
    on an Adam of its own at 3e-4 (D's is 1e-4), so that it learns what the few labelled
    batches teach without costing G its spread. For labels that survive a 2-pixel shift
    (classes, attributes, angles), not positions.

    Expected on digit_scenes `:celeba` (CPU, with colour_32's moving average): the four binary
    codes 0.97-0.99 mean direct accuracy at step 1,000 (seeds 1-4). The measurements:
    docs/digit_scenes.md.
    """
    config.model.q_ss_trunk = "own"
    config.loss.q_ss_max_shift = 2
    config.optimizer.q_ss_learning_rate = 3e-4
    return config


def colour_blind_q_ss(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """On top of `own_q_ss`, for codes whose labels do not depend on colour (digits, object
    classes): Q_ss reads every image, real or fake, with its channels reordered and maybe
    negated at random, so that G must draw its codes in shape rather than mark them with
    colour, and learns at Adam 1e-3. G's colours are duller for a while.

    Expected on digit_scenes `:svhn` (CPU, with G's moving average): the digit code 0.96 / 0.99
    direct accuracy at step 1,000 (seeds 1 / 2). The measurements: docs/digit_scenes.md.
    """
    config.loss.q_ss_recolour = True
    config.optimizer.q_ss_learning_rate = 1e-3
    return config


def runlocal(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks `config` in place to a smoke run: 6 steps of batch 16, a tiny final evaluation.

    Checks that data, model, checkpoints and evaluation fit together in well under a minute of
    training; its metrics mean nothing.
    """
    config.batch_size = 16
    config.num_train_steps = 6
    config.log_every_steps = 2
    config.checkpoint_every_steps = 3
    config.eval_every_steps = 0  # Only at the end.
    config.images_every_steps = 0
    config.eval.samples_per_value = 8
    config.eval.judge_steps = 50  # Cached apart from a real run's judge.
    return config


# Config fields renamed since a release, {old: new}: an old name is refused with a hint to the
# new one (config_checks, main's flag parser), and a work dir's config.json that still has the
# old names is read under the new ones (config_checks.compare_with_saved).
RENAMED_FIELDS = {
    "eval.classifier_dir": "eval.judge_dir",
    "eval.classifier_steps": "eval.judge_steps",
    "eval.classifier_seed": "eval.judge_seed",
    "eval.classifier_batch_size": "eval.judge_batch_size",
    "eval.classifier_max_shift": "eval.judge_max_shift",
}


def renamed_field_hint(argv) -> str | None:
    """The one-line hint for the first `--config.<old name>=...` of `argv`, None if none."""
    for arg in argv:
        name = arg.lstrip("-").partition("=")[0].removeprefix("config.")
        if arg.startswith(("--config.", "-config.")) and name in RENAMED_FIELDS:
            return (
                f"--config.{name} was renamed: use --config.{RENAMED_FIELDS[name]} (the judge's "
                "settings are config.eval.judge_*)"
            )
    return None


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg("configs/default.py", arg, ARGS)
    config = ml_collections.ConfigDict()
    config.seed = 1  # Training randomness (init, latents, batch choice); the reference's rng_seed.

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist"  # A tfds name, or 'digits' (scikit-learn's 8x8 digits, offline).
    config.data.data_dir = ""  # tfds data_dir; '' = tfds's default (~/tensorflow_datasets).
    config.data.raw_dir = ""  # A folder of raw files (e.g. MNIST IDX) to build the tfds set from.
    # When the set is not prepared in data_dir and no raw_dir is given: 'auto' downloads and
    # prepares it with tfds (once; needs network), 'never' stops at once and says how to
    # prepare it offline. A raw_dir always wins (built from those files, nothing fetched).
    config.data.download = "auto"
    # Labelled training examples; -1 = use labeled_fraction. For name = 'folder': per label, at
    # most this many of the rows whose cell is filled (-1 and fraction 1 = all of them).
    config.data.num_labeled = 600
    config.data.labeled_fraction = 0.01  # Used when num_labeled == -1.
    config.data.labeled_selection = "stratified"  # 'stratified' (per class) or 'random' (ref.).
    config.data.labeled_seed = 1234  # Independent of `seed`, as in the reference.
    # Labelled batches. 'alternate' (reference): each batch is all labelled with probability
    # p(t), else all unlabelled. 'mix': every batch holds mix_labeled_share labelled examples.
    config.data.batch_mode = "alternate"
    # p(t) starts at p_labeled_start and moves by p_labeled_step every p_labeled_every steps to
    # p_labeled_final (-1 = the true labelled fraction num_labeled / num_train), then stays.
    # The reference run: 1.0, 0.1, 100, -1. With num_labeled == 0, p(t) = 0 throughout.
    config.data.p_labeled_start = 1.0
    config.data.p_labeled_step = 0.1
    config.data.p_labeled_every = 100
    config.data.p_labeled_final = -1.0
    config.data.mix_labeled_share = 0.25  # 'mix' mode only: labelled share of every batch.
    # Labelled examples are translated by up to this many pixels (uniform per axis, fresh each
    # time drawn); 0 = never (the reference). Unlabelled examples are never changed.
    config.data.labeled_max_shift = 0
    # Not in the paper (0 / False = off): inside the step, the labelled examples are also
    # rotated by up to this many degrees, scaled by up to this fraction (bilinear), and made a
    # pixel thicker or thinner at random (for light strokes on a dark ground, e.g. digits).
    config.data.labeled_max_rotation = 0.0
    config.data.labeled_max_scale = 0.0
    config.data.labeled_restroke = False
    config.data.prefetch = 2  # Batches computed ahead in a background thread (0 = none).
    # celeb_a only. Each attribute is a binary label of that name (the paper's four codes).
    config.data.celeba_attributes = ("Smiling", "Mouth_Slightly_Open", "Attractive", "Male")
    # The paper cropped faces with a detector; we use a fixed box on the 218x178 aligned
    # images instead: (top, left, height, width) = 128x128 centred on (x=89, y=121), the
    # ProGAN CelebA crop. It holds the eyes (y~111) to the chin, so mouth and smile stay in.
    config.data.celeba_crop = (57, 25, 128, 128)
    # name = 'folder': your own images (see docs/own_data.md). A folder of
    # PNG/JPEG files and a CSV with a `file` column (paths relative to images_dir), an optional
    # `split` column (train / test) and one column per label; a blank cell = not labelled.
    config.data.images_dir = ""
    config.data.labels_csv = ""
    # Kinds of label columns where the inferred one is not wanted: 'age=continuous,id=categorical'
    # (kinds: categorical, binary, continuous).
    config.data.label_kinds = ""
    # Class order of categorical labels (code value k = the k-th class), each list complete:
    # 'colour=red|green|blue'. Default: integers in numeric order, other names sorted.
    config.data.label_classes = ""
    # Without a `split` column: this share of the rows that carry any label is the test split
    # (for the independent judge), chosen with labeled_seed; those rows are not trained on.
    config.data.test_share = 0.2
    # Images in images_dir that the CSV does not list: 'error', or 'unlabeled' (train on them
    # as unlabelled examples).
    config.data.unlisted_images = "error"

    config.model = ml_collections.ConfigDict()
    config.model.arch = "infogan_mnist"  # See models.ARCHITECTURES.
    # Matmul precision: 'float32', or 'bfloat16' (bfloat16 operands, float32 accumulation;
    # parameters, optimizer state, batch-norm statistics and losses stay float32). Converges
    # like float32 on MNIST (0.989 at 2,000 steps, 100 labels); see benchmarks/README.md.
    config.model.dtype = "float32"
    # How the k4 s2 convolutions are computed: 'cpu_fast' (ssinfogan_jax/layers.py, tuned for
    # XLA:CPU), 'flax' (Flax's nn.Conv / nn.ConvTranspose: XLA's own, what GPUs and TPUs are
    # built for) or 'auto' ('cpu_fast' on CPU, 'flax' elsewhere). Same parameters either way.
    config.model.conv_impl = "auto"
    # Batch norm in D's trunk (the reference's). Off for the 32x32 data sets: there D, which
    # normalises the real and the fake batch each by its own statistics, cannot see that G's
    # samples lack the data's spread, and G collapses (docs/digit_scenes.md).
    config.model.d_batch_norm = True
    # Where Q_ss reads from: 'shared' (a head on D's trunk, the paper's) or 'own' (a trunk of
    # the same architecture with its own weights, trained by the Q_ss terms alone; not in the
    # paper): what Q_ss learns from the few labelled images then leaves D's features alone.
    config.model.q_ss_trunk = "shared"
    # Not in the paper: dropout at this rate on the features Q_ss's head reads, in training, so
    # that what it learns from a few labels generalises (0 = off; docs/digit_scenes.md).
    config.model.q_ss_dropout = 0.0

    config.latents = ml_collections.ConfigDict()
    config.latents.codes = [
        code("digit", "categorical", 10, label="label"),  # c_ss
        code("c_us", "continuous", 2),  # c_us
    ]
    # True: one supervised code per label of the data (for name = 'folder': per label column of
    # the CSV; categorical with the classes seen, or continuous of size 1), placed before
    # `codes`, which then lists only the free codes.
    config.latents.codes_from_data = False
    config.latents.noise_size = 62
    config.latents.noise_distribution = "normal"  # 'normal' (reference) or 'uniform' (openai).
    config.latents.continuous_range = 1.0  # Continuous codes ~ U(-r, r).

    config.loss = ml_collections.ConfigDict()
    config.loss.lambda_ss_d = 2.0  # info_reg_sup_coef_train
    config.loss.lambda_us_d = 0.8  # info_reg_unsup_coef_train
    config.loss.lambda_ss_g = 2.0  # info_reg_sup_coef_learn
    config.loss.lambda_us_g = 0.8  # info_reg_unsup_coef_learn
    # Train Q_ss on fakes on the D side: None = exactly when num_labeled == 0 (InfoGAN baseline).
    config.loss.q_ss_on_fakes = ml_collections.FieldReference(None, field_type=bool)
    # With labels, the first step at which Q_ss trains on fakes (without labels: step 0).
    config.loss.q_ss_on_fakes_start = 0
    # Not in the paper (0 = off): weight of KL(Q_ss(x) || Q_ss(x shifted by up to
    # consistency_max_shift px)) over the real batch, so unlabelled reals also shape Q_ss.
    config.loss.lambda_consistency = 0.0
    config.loss.consistency_max_shift = 2
    # Not in the paper (0 = off; needs model.q_ss_trunk = 'own'): the reals Q_ss reads are
    # translated by up to this many pixels (fresh each step), D's are not. With the shared
    # trunk, data.labeled_max_shift translates labelled examples for both.
    config.loss.q_ss_max_shift = 0
    # Not in the paper (needs model.q_ss_trunk = 'own'): Q_ss reads every image, real or fake,
    # with its colour channels reordered and maybe negated at random, so that G cannot mark
    # its supervised codes with colour. Only for labels that do not depend on colour.
    config.loss.q_ss_recolour = False

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.g_learning_rate = 1e-3
    config.optimizer.d_learning_rate = 1e-4  # D trunk and all heads share one Adam.
    # Not in the paper (0 = D's rate, the reference): Q_ss's own Adam at this rate, for its
    # head and, with model.q_ss_trunk = 'own', its trunk, so that the few labelled batches
    # teach it more than D's slow rate allows (own_q_ss: 3e-4; measured in docs/digit_scenes.md).
    config.optimizer.q_ss_learning_rate = 0.0
    # Not in the paper (0 = off): a moving average of G's weights (and batch-norm statistics)
    # with this decay, e.g. 0.999 (early on at most (1 + t) / (10 + t)), is kept beside G and
    # is what evaluation, the best checkpoint and sampling use.
    config.optimizer.g_ema_decay = 0.0
    config.optimizer.b1 = 0.5
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8

    # Gaussian noise added to D's real and fake inputs in the D step; sigma_t = stddev * decay^t.
    config.instance_noise = ml_collections.ConfigDict()
    config.instance_noise.stddev = 0.0
    config.instance_noise.decay = 1.0

    config.batch_size = 128  # Global batch, split over all devices and hosts.
    # How the step spreads over devices (ssinfogan_jax/parallel.py): 'auto' = 'jit' (jax.jit
    # with NamedSharding over every device, the batch sharded; plain jit on one device),
    # 'shard_map' (a per-device step inside jax.jit) or 'pmap' (the old way).
    config.parallel = "auto"
    config.num_train_steps = 5_000  # The reference: 50 "epochs" of 100 iterations.
    # k > 1: the train split is kept on the device and one call runs k steps (lax.scan): for
    # accelerators, where one small step per call leaves the device idle (on XLA:CPU, which
    # runs a loop body ~4x slower, k calls of one step each, the data still on the device).
    # The cadences below must then be multiples of k. 1: one step per call, fed from the host.
    config.steps_per_dispatch = 1
    # Several runs trained as one program (ssinfogan_jax/sweep.py), each in <workdir>/<name>:
    # runs separated by ';', each a comma-separated list of field=value overrides, e.g.
    # 'seed=1;seed=2;seed=3'. '' = one run. Runs that differ only in seeds and labelled
    # subsets are vmapped together; the others train as programs of their own.
    config.runs = ""

    config.log_every_steps = 100  # Scalars to TensorBoard and a progress line.
    # True: d_grad_norm and g_grad_norm among the train metrics. Off by default: on XLA:CPU
    # they cost 11-13% of an MNIST step (batch 32 and 128; XLA writes each gradient squared,
    # then reduces it); on GPUs and TPUs next to nothing.
    config.log_grad_norms = False
    # Where TensorBoard events go ('' = the work dir). They are written by TensorFlow's own file
    # system (tf.summary), which reaches real gs:// buckets but not a GCS emulator.
    config.tensorboard_dir = ""
    config.checkpoint_every_steps = 500
    config.max_checkpoints_to_keep = 2
    config.eval_every_steps = 500  # Conditional accuracy etc.; 0 = only at the end.
    config.images_every_steps = 1_000  # Sample and traversal grids to TensorBoard.
    # The best checkpoint is kept apart by this eval metric ('' = keep no best checkpoint).
    config.best_metric = "cond_acc_direct"

    config.eval = ml_collections.ConfigDict()
    config.eval.samples_per_value = 128  # Per value of each supervised code (the reference).
    # The judge (the independent classifier that scores samples) is cached here, one folder per
    # data fingerprint, heads and options; '' = <data_dir>/ssinfogan_classifiers.
    config.eval.judge_dir = ""
    config.eval.judge_steps = 2_000  # Training steps if it has to be trained.
    config.eval.judge_batch_size = 128  # Their batch size.
    config.eval.judge_seed = 0  # The same judge for every training seed.
    # Random shift (pixels) of the judge's training images. -1: 2, or 0 when it judges a
    # continuous label (which may be a position); a data set whose continuous labels survive a
    # shift sets it (configs/digit_scenes.py). Rotation and scaling stay off for those.
    config.eval.judge_max_shift = -1.0
    # Judges in the ensemble: > 1 judges by the mean of that many judges' probabilities (the
    # mean regression for a continuous label), judge i trained from judge_seed + i and cached
    # apart (judge 0 is the single judge). Measured in docs/digit_scenes.md.
    config.eval.judge_ensemble = 1

    config.sample = ml_collections.ConfigDict()
    config.sample.checkpoint = "latest"  # 'latest' or 'best'.
    config.sample.per_value = 10  # Samples per value of each supervised code.
    config.sample.traversal_rows = 8
    config.sample.traversal_values = 10  # Columns for a continuous code's sweep over [-2, 2].

    # Persistent XLA compilation cache ('' = off): cuts start-up from ~12 s to ~4 s.
    config.compilation_cache_dir = "~/.cache/ssinfogan_jax/xla"
    if "runlocal" in args:
        runlocal(config)
    return config


# The configs shipped with the package (setup.py installs `configs/` as this package).
SHIPPED_PACKAGE = "ssinfogan_jax.configs"


def shipped_dir() -> pathlib.Path | None:
    """The folder of the shipped configs that belong to this copy of the package:
    `ssinfogan_jax/configs/` in a wheel, the checkout's `configs/` when the package runs from a
    checkout (an editable install, or PYTHONPATH); else wherever the `ssinfogan_jax.configs`
    package imports from; None if there is none."""
    package = pathlib.Path(__file__).resolve().parent
    if (package / "configs" / "__init__.py").is_file():
        return package / "configs"
    if (package.parent / "setup.py").is_file() and (package.parent / "configs").is_dir():
        return package.parent / "configs"
    try:
        return pathlib.Path(str(importlib.resources.files(SHIPPED_PACKAGE)))
    except ModuleNotFoundError:
        return None


def shipped_names() -> list[str]:
    """The names of the shipped configs (`celeba`, `digits`, ...), sorted."""
    folder = shipped_dir()
    if folder is None:
        return []
    return sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")


def shipped_file(name: str) -> pathlib.Path | None:
    """The shipped config that `name` means (`celeba`, `celeba.py` or `configs/celeba.py`), or
    None if `name` names none."""
    parts = pathlib.PurePath(name).parts
    if len(parts) == 2 and parts[0] == "configs":
        parts = parts[1:]
    stem = parts[0].removesuffix(".py") if len(parts) == 1 else ""
    if not stem.isidentifier() or stem not in shipped_names():
        return None
    return shipped_dir() / f"{stem}.py"


def config_file(spec: str) -> str:
    """`--config`'s value (`path[:arg]`) with its file found: `path` itself where that file
    exists (relative to the working directory), else the shipped config it names, so that
    `--config=celeba`, `--config=mnist:runlocal` and `--config=configs/celeba.py` work from any
    directory and from a wheel.

    Raises FileNotFoundError, with one line naming what was looked for and where, if neither
    exists.
    """
    path, colon, arg = spec.partition(":")
    if os.path.isfile(path):
        return spec
    shipped = shipped_file(path)
    if shipped is not None:
        return f"{shipped}{colon}{arg}"
    raise FileNotFoundError(
        f"no config file {path!r} in {os.getcwd()}, and no shipped config of that name "
        f"(shipped: {', '.join(shipped_names()) or 'none'}); pass a config file's path, or a "
        "shipped name such as --config=digits or --config=mnist:runlocal"
    )


def shipped_config(name: str) -> types.ModuleType:
    """The shipped config `name` (e.g. 'folder') as a module: its `get_config(arg)` and `ARGS`.

    Raises FileNotFoundError if no shipped config has that name.
    """
    path = shipped_file(name)
    if path is None:
        raise FileNotFoundError(
            f"no shipped config {name!r} (shipped: {', '.join(shipped_names()) or 'none'})"
        )
    spec = importlib.util.spec_from_file_location(f"ssinfogan_jax_shipped_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
