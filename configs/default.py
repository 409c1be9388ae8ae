"""Default configuration: every field, with what it means. Data set configs override a few.

The defaults are the reference ss-InfoGAN MNIST run (spurra/ss-infogan, configuration.lua):
batch 128, 5,000 iterations, Adam 1e-4 (D/Q) and 1e-3 (G) with beta1 0.5, lambda 2 / 0.8,
latents [c_ss 10-way | c_us 2 x U(-1, 1) | 62 x N(0, 1)].
"""

import ml_collections


def code(name: str, kind: str, size: int, label: str = "") -> ml_collections.ConfigDict:
    """One latent code; `label` names the data set label that supervises it ('' = free)."""
    return ml_collections.ConfigDict(dict(name=name, kind=kind, size=size, label=label))


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 1  # Training randomness (init, latents, batch choice); the reference's rng_seed.

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist"  # A tfds name, or 'digits' (scikit-learn's 8x8 digits, offline).
    config.data.data_dir = ""  # tfds data_dir; '' = tfds's default (~/tensorflow_datasets).
    config.data.raw_dir = ""  # A folder of raw files (e.g. MNIST IDX) to build the tfds set from.
    config.data.num_labeled = 600  # Labelled training examples; -1 = use labeled_fraction.
    config.data.labeled_fraction = 0.01  # Used when num_labeled == -1.
    config.data.labeled_selection = "stratified"  # 'stratified' (per class) or 'random' (ref.).
    config.data.labeled_seed = 1234  # Independent of `seed`, as in the reference.
    # Labelled batches. 'alternate' (reference): each batch is all labelled with probability
    # p(t), else all unlabelled. 'mix': every batch holds mix_labeled_share labelled examples.
    config.data.batch_mode = "alternate"
    # p(t) starts at p_labeled_start and moves by p_labeled_step every p_labeled_every steps to
    # p_labeled_final (-1 = the true labelled fraction num_labeled / num_train), then stays.
    # Reference (section 8): 1.0, 0.1, 100, -1. With num_labeled == 0, p(t) = 0 throughout.
    config.data.p_labeled_start = 1.0
    config.data.p_labeled_step = 0.1
    config.data.p_labeled_every = 100
    config.data.p_labeled_final = -1.0
    config.data.mix_labeled_share = 0.25  # 'mix' mode only: labelled share of every batch.
    # Labelled examples are translated by up to this many pixels (uniform per axis, fresh each
    # time drawn); 0 = never (the reference). Unlabelled examples are never changed.
    config.data.labeled_max_shift = 0
    config.data.prefetch = 2  # Batches computed ahead in a background thread (0 = none).
    # celeb_a only. Each attribute is a binary label of that name (the paper's four codes).
    config.data.celeba_attributes = ("Smiling", "Mouth_Slightly_Open", "Attractive", "Male")
    # The paper cropped faces with a detector; we use a fixed box on the 218x178 aligned
    # images instead: (top, left, height, width) = 128x128 centred on (x=89, y=121), the
    # ProGAN CelebA crop. It holds the eyes (y~111) to the chin, so mouth and smile stay in.
    config.data.celeba_crop = (57, 25, 128, 128)

    config.model = ml_collections.ConfigDict()
    config.model.arch = "infogan_mnist"  # See models.ARCHITECTURES.

    config.latents = ml_collections.ConfigDict()
    config.latents.codes = [
        code("digit", "categorical", 10, label="label"),  # c_ss
        code("c_us", "continuous", 2),  # c_us
    ]
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

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.g_learning_rate = 1e-3
    config.optimizer.d_learning_rate = 1e-4  # D trunk and all heads share one Adam.
    config.optimizer.b1 = 0.5
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8

    # Gaussian noise added to D's real and fake inputs in the D step; sigma_t = stddev * decay^t.
    config.instance_noise = ml_collections.ConfigDict()
    config.instance_noise.stddev = 0.0
    config.instance_noise.decay = 1.0

    config.batch_size = 128  # Global batch, split over all devices and hosts.
    # 'auto' (jit on one device, pmap on several), 'jit', 'pmap' or 'shard_map'.
    config.parallel = "auto"
    config.num_train_steps = 5_000  # The reference: 50 "epochs" of 100 iterations.

    config.log_every_steps = 100  # Scalars to TensorBoard and a progress line.
    config.checkpoint_every_steps = 500
    config.max_checkpoints_to_keep = 2
    config.eval_every_steps = 500  # Conditional accuracy etc.; 0 = only at the end.
    config.images_every_steps = 1_000  # Sample and traversal grids to TensorBoard.
    # The best checkpoint is kept apart by this eval metric ('' = keep no best checkpoint).
    config.best_metric = "cond_acc_direct"

    config.eval = ml_collections.ConfigDict()
    config.eval.samples_per_value = 128  # Per value of each supervised code (the reference).
    config.eval.classifier_dir = ""  # Independent classifier; '' = <data_dir>/classifiers.
    config.eval.classifier_steps = 2_000  # Training steps if it has to be trained.
    config.eval.classifier_seed = 0  # The same judge for every training seed.

    config.sample = ml_collections.ConfigDict()
    config.sample.checkpoint = "latest"  # 'latest' or 'best'.
    config.sample.per_value = 10  # Samples per value of each supervised code.
    config.sample.traversal_rows = 8
    config.sample.traversal_values = 10  # Columns for a continuous code's sweep over [-2, 2].

    # Persistent XLA compilation cache ('' = off): cuts start-up from ~12 s to ~4 s.
    config.compilation_cache_dir = "~/.cache/ssinfogan_jax/xla"
    return config
