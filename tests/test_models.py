"""The networks: reference parameter counts, shapes, output ranges, init, batch norm, heads."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import create_models, small_config
from scipy import stats

from ssinfogan_jax import default_config as default
from ssinfogan_jax import latents, models


def jit(fn, **kwargs):
    """`fn` with keyword arguments bound, jitted (eager Flax calls are slow on CPU)."""
    return jax.jit(functools.partial(fn, **kwargs))


@pytest.fixture(autouse=True)
def _fast(fast_compile):
    yield


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@functools.cache
def mnist_variables():
    """(layout, G, D, G variables, D variables) of the reference MNIST nets, seeded."""
    layout, generator, discriminator = create_models(small_config())
    g_vars = jit(generator.init, train=False)(jax.random.PRNGKey(0), jnp.zeros((2, 74)))
    images = jnp.zeros((2, 28, 28, 1))
    d_vars = jit(discriminator.init, train=False)(jax.random.PRNGKey(1), images)
    return layout, generator, discriminator, g_vars, d_vars


# Reference layer lists (reference section 4), with biases, counted by hand.
G_LAYERS = {
    "Linear 74->1024": 74 * 1024 + 1024,
    "BN 1024": 2 * 1024,
    "Linear 1024->6272": 1024 * 6272 + 6272,
    "BN 6272": 2 * 6272,
    "FullConv 128->64 k4": 4 * 4 * 128 * 64 + 64,
    "BN 64": 2 * 64,
    "FullConv 64->1 k4": 4 * 4 * 64 * 1 + 1,
}
TRUNK_LAYERS = {
    "Conv 1->64 k4": 4 * 4 * 1 * 64 + 64,
    "Conv 64->128 k4": 4 * 4 * 64 * 128 + 128,
    "BN 128": 2 * 128,
    "Linear 6272->1024": 6272 * 1024 + 1024,
    "BN 1024": 2 * 1024,
}
D_HEAD = 1024 * 1 + 1
Q_SS = 1024 * 10 + 10
Q_US = (1024 * 128 + 128) + 2 * 128 + (128 * 2 + 2)


def test_reference_parameter_counts():
    _, _, _, g_vars, d_vars = mnist_variables()
    assert sum(G_LAYERS.values()) == 6_652_481
    assert sum(TRUNK_LAYERS.values()) + D_HEAD + Q_SS + Q_US == 6_701_133
    assert count(g_vars["params"]) == 6_652_481
    d = d_vars["params"]
    assert set(d) == {"trunk", "d_head", "q_ss", "q_us"}
    assert count(d["trunk"]) == sum(TRUNK_LAYERS.values())
    assert (count(d["d_head"]), count(d["q_ss"]), count(d["q_us"])) == (D_HEAD, Q_SS, Q_US)
    assert count(d) == 6_701_133


def test_reference_layer_sizes():
    """Kernel sizes (layout-independent) and batch-norm widths: no BN after the first conv."""
    _, _, _, g_vars, d_vars = mnist_variables()

    def kernel_sizes(params):
        leaves = jax.tree_util.tree_leaves_with_path(params)
        return sorted(x.size for p, x in leaves if p[-1].key == "kernel")

    def bn_widths(stats):
        leaves = jax.tree_util.tree_leaves_with_path(stats)
        return sorted(x.size for p, x in leaves if p[-1].key == "mean")

    assert kernel_sizes(g_vars["params"]) == sorted(
        [74 * 1024, 1024 * 6272, 16 * 128 * 64, 16 * 64]
    )
    assert kernel_sizes(d_vars["params"]["trunk"]) == sorted([16 * 64, 16 * 64 * 128, 6272 * 1024])
    assert bn_widths(g_vars["batch_stats"]) == [64, 1024, 6272]
    assert bn_widths(d_vars["batch_stats"]["trunk"]) == [128, 1024]
    assert bn_widths(d_vars["batch_stats"]["q_us"]) == [128]
    assert set(d_vars["batch_stats"]) == {"trunk", "q_us"}  # No BN in D head or Q_ss.


def test_mnist_shapes_and_sigmoid_output():
    layout, generator, discriminator, g_vars, d_vars = mnist_variables()
    z = latents.generator_input(layout, latents.sample(jax.random.PRNGKey(2), layout, 16))
    images = jit(generator.apply, train=False)(g_vars, z)
    assert images.shape == (16, 28, 28, 1) and images.dtype == jnp.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    np.testing.assert_allclose(float(images.mean()), 0.5, atol=0.05)  # sigmoid(~0) at init.
    assert float(images.std()) > 1e-4
    # Saturated pre-activations stay inside [0, 1].
    # (The output layer is the only one with a single-channel 4 x 4 x 64 kernel.)
    last = lambda path, x: path[-1].key == "kernel" and x.size == 16 * 64
    big = jax.tree_util.tree_map_with_path(lambda p, x: x * 1e4 if last(p, x) else x, g_vars)
    saturated = jit(generator.apply, train=False)(big, z)
    assert float(saturated.min()) >= 0.0 and float(saturated.max()) <= 1.0
    assert float(saturated.min()) < 0.01 and float(saturated.max()) > 0.99
    out = jit(discriminator.apply, train=False)(d_vars, images)
    assert out["logit"].shape == (16,)
    assert {k: v.shape for k, v in out["q"].items()} == {"digit": (16, 10), "c_us": (16, 2)}


def test_infogan_32_shapes_and_tanh_output():
    config = default.get_config()
    config.model.arch = "infogan_32"
    config.latents.codes = [default.code(f"cat{i}", "categorical", 10) for i in range(4)] + [
        default.code("cont", "continuous", 4)
    ]
    config.latents.codes[0].label = "label"
    config.latents.noise_size = 124
    layout, generator, discriminator = create_models(config)
    assert layout.input_size == 168
    assert models.get_architecture("infogan_32").image_shape == (32, 32, 3)
    z = latents.generator_input(layout, latents.sample(jax.random.PRNGKey(3), layout, 4))
    g_vars = jit(generator.init, train=False)(jax.random.PRNGKey(0), z)
    images = jit(generator.apply, train=False)(g_vars, z)
    assert images.shape == (4, 32, 32, 3)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    assert float(images.min()) < 0.0 < float(images.max())  # tanh, centred on 0 at init.
    np.testing.assert_allclose(float(images.mean()), 0.0, atol=0.05)
    d_vars = jit(discriminator.init, train=False)(jax.random.PRNGKey(1), images)
    out = jit(discriminator.apply, train=False)(d_vars, images)
    assert out["logit"].shape == (4,)
    assert {k: v.shape for k, v in out["q"].items()} == {
        "cat0": (4, 10), "cat1": (4, 10), "cat2": (4, 10), "cat3": (4, 10), "cont": (4, 4)
    }  # fmt: skip
    assert d_vars["params"]["q_ss"]["kernel"].shape == (4096, 10)  # 4 x 4 x 256 trunk.
    assert d_vars["params"]["q_us"]["Dense_1"]["kernel"].shape[-1] == 34


def _colour_models(arch: str, d_batch_norm: bool = True):
    config = default.colour_32(default.get_config())
    config.model.arch, config.model.d_batch_norm = arch, d_batch_norm
    config.latents.codes = [
        default.code("digit", "categorical", 10, label="label"),
        default.code("c_us", "continuous", 4),
    ]
    config.latents.noise_size = 124
    return create_models(config)


def _noise_spread_at_init(arch: str) -> float:
    """Per-pixel standard deviation of G's first samples over 64 noise draws, codes fixed."""
    layout, generator, _ = _colour_models(arch)
    codes = latents.sample(jax.random.PRNGKey(3), layout, 64)
    codes = {**codes, "digit": jnp.zeros_like(codes["digit"]), "c_us": codes["c_us"][:1] * 0}
    z = latents.generator_input(
        layout, jax.tree.map(lambda x: jnp.broadcast_to(x, (64, *x.shape[1:])), codes)
    )
    g_vars = jit(generator.init, train=False)(jax.random.PRNGKey(0), z)
    images, _ = jit(generator.apply, train=True, mutable=["batch_stats"])(g_vars, z)
    return float(images.std(axis=0).mean())


def test_dcgan_32_samples_vary_with_the_noise_from_the_first_step():
    # infogan_32 (BN on two of five layers, N(0, 0.02) weights) starts with samples that are
    # nearly one image whatever the noise; dcgan_32, normalised throughout, does not.
    assert models.get_architecture("dcgan_32").image_shape == (32, 32, 3)
    dcgan, infogan = _noise_spread_at_init("dcgan_32"), _noise_spread_at_init("infogan_32")
    assert dcgan > 0.1, dcgan
    assert infogan < 0.03, infogan


@pytest.mark.parametrize("d_batch_norm", [True, False])
def test_d_without_batch_norm_scores_each_image_apart_from_its_batch(d_batch_norm):
    # With batch norm in train mode D scores an image against its batch's statistics, which is
    # what hides a collapsed batch of fakes; without it an image's logit is its own.
    _, _, discriminator = _colour_models("dcgan_32", d_batch_norm)
    images = jax.random.uniform(jax.random.PRNGKey(0), (16, 32, 32, 3), minval=-1.0, maxval=1.0)
    d_vars = jit(discriminator.init, train=False)(jax.random.PRNGKey(1), images)
    has_trunk_stats = "trunk" in d_vars.get("batch_stats", {})
    assert has_trunk_stats == d_batch_norm
    assert "BatchNorm_0" in d_vars["batch_stats"]["q_us"]  # Q_us keeps its own either way.
    apply = jit(discriminator.apply, train=True, mutable=["batch_stats"])
    alone, _ = apply(d_vars, images)
    with_others, _ = apply(d_vars, images.at[8:].set(images[8:] * 0.1))
    moved = float(jnp.abs(alone["logit"][:8] - with_others["logit"][:8]).max())
    if d_batch_norm:
        assert moved > 1e-3, moved
    else:
        assert moved < 1e-5, moved
    assert alone["logit"].shape == (16,) and alone["q"]["digit"].shape == (16, 10)


def test_dcgan_64_is_dcgans_64x64_nets():
    """G: FC 4x4x512, upconvs to 256, 128, 64 (each with BN) and 3 (tanh), 64x64 images; D's
    trunk: convs 64 (no BN), 128, 256 and 512 (BN each) to 4x4x512, the heads on top."""
    assert models.get_architecture("dcgan_64").image_shape == (64, 64, 3)
    layout, generator, discriminator = _colour_models("dcgan_64", d_batch_norm=True)
    z = latents.generator_input(layout, latents.sample(jax.random.PRNGKey(3), layout, 4))
    g_vars = jit(generator.init, train=False)(jax.random.PRNGKey(0), z)
    images = jit(generator.apply, train=False)(g_vars, z)
    assert images.shape == (4, 64, 64, 3) and images.dtype == jnp.float32
    assert -1.0 <= float(images.min()) < 0.0 < float(images.max()) <= 1.0
    d_vars = jit(discriminator.init, train=False)(jax.random.PRNGKey(1), images)
    out = jit(discriminator.apply, train=False)(d_vars, images)
    assert out["logit"].shape == (4,)
    assert {k: v.shape for k, v in out["q"].items()} == {"digit": (4, 10), "c_us": (4, 4)}

    def shapes(tree, leaf):
        paths = jax.tree_util.tree_leaves_with_path(tree)
        return [x.shape for p, x in paths if p[-1].key == leaf]

    upconvs = [(4, 4, 512, 256), (4, 4, 256, 128), (4, 4, 128, 64), (4, 4, 64, 3)]
    assert shapes(g_vars["params"], "kernel") == [*upconvs, (layout.input_size, 4 * 4 * 512)]
    assert shapes(g_vars["batch_stats"], "mean") == [(8192,), (256,), (128,), (64,)]
    trunk = d_vars["params"]["trunk"]
    assert shapes(trunk, "kernel") == [
        (4, 4, 3, 64),
        (4, 4, 64, 128),
        (4, 4, 128, 256),
        (4, 4, 256, 512),
    ]
    assert shapes(d_vars["batch_stats"]["trunk"], "mean") == [(128,), (256,), (512,)]
    assert d_vars["params"]["d_head"]["kernel"].shape == (8192, 1)  # DCGAN's 4x4 conv to 1.
    assert _noise_spread_at_init("dcgan_64") > 0.1  # Normalised throughout, as dcgan_32.


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture"):
        models.get_architecture("resnet")


def test_init_statistics():
    _, _, _, g_vars, d_vars = mnist_variables()
    params = {"g": g_vars["params"], "d": d_vars["params"]}
    kernels, scales = [], []
    for path, x in jax.tree_util.tree_leaves_with_path(params):
        x = np.asarray(x).reshape(-1)
        leaf = path[-1].key
        if leaf == "bias":
            np.testing.assert_array_equal(x, 0.0, err_msg=jax.tree_util.keystr(path))
        elif leaf == "kernel":
            kernels.append(x)
            # Each layer is N(0, 0.02): std within 6 standard errors (11 for the smallest).
            tol = 6 * 0.02 / np.sqrt(2 * x.size) + 1e-4
            assert abs(x.std() - 0.02) < tol, (jax.tree_util.keystr(path), x.std())
            assert abs(x.mean()) < 6 * 0.02 / np.sqrt(x.size), jax.tree_util.keystr(path)
        else:
            assert leaf == "scale"
            scales.append(x)
    big = max(kernels, key=len)
    sample = np.random.default_rng(0).choice(big, 100_000, replace=False)
    assert stats.kstest(sample, stats.norm(0, 0.02).cdf).pvalue > 1e-3  # Normal, untruncated.
    assert stats.kstest(sample, stats.uniform(-0.02 * 3**0.5, 0.04 * 3**0.5).cdf).pvalue < 1e-6
    gammas = np.concatenate(scales)
    assert gammas.size == 1024 + 6272 + 64 + 128 + 1024 + 128
    np.testing.assert_allclose(gammas.mean(), 1.0, atol=0.002)
    np.testing.assert_allclose(gammas.std(), 0.02, rtol=0.05)
    for stats_tree in (g_vars["batch_stats"], d_vars["batch_stats"]):
        for path, x in jax.tree_util.tree_leaves_with_path(stats_tree):
            np.testing.assert_array_equal(x, 0.0 if path[-1].key == "mean" else 1.0)


def test_batch_norm_momentum_point_nine():
    """running = 0.9 running + 0.1 batch (Torch momentum 0.1); Flax uses the biased variance."""
    layout, generator, _, g_vars, _ = mnist_variables()
    z = np.asarray(
        latents.generator_input(layout, latents.sample(jax.random.PRNGKey(4), layout, 32))
    )
    _, mutated = jit(generator.apply, train=True, mutable=["batch_stats"])(g_vars, z)
    dense = g_vars["params"]["Dense_0"]
    h = z.astype(np.float64) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
    new = mutated["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(new["mean"], 0.9 * 0.0 + 0.1 * h.mean(0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(new["var"], 0.9 * 1.0 + 0.1 * h.var(0), rtol=1e-5)


def test_batch_norm_epsilon_and_leaky_slope():
    """Eval mode: BN divides by sqrt(var + 1e-5); the trunk's LeakyReLU has slope 0.01."""
    _, _, discriminator, _, d_vars = mnist_variables()
    variables = jax.tree.map(lambda x: x, d_vars)
    var = np.full(1024, 1e-5, np.float32)  # As small as epsilon: 1e-5 vs 1e-3 differ by 7x.
    variables["batch_stats"]["trunk"]["BatchNorm_1"]["var"] = var
    images = jax.random.uniform(jax.random.PRNGKey(5), (4, 28, 28, 1))
    apply = jit(
        discriminator.apply, train=False, capture_intermediates=True, mutable=["intermediates"]
    )
    _, inter = apply(variables, images)
    trunk = inter["intermediates"]["trunk"]
    pre = np.asarray(trunk["Dense_0"]["__call__"][0], np.float64)
    bn = np.asarray(trunk["BatchNorm_1"]["__call__"][0], np.float64)
    scale = np.asarray(d_vars["params"]["trunk"]["BatchNorm_1"]["scale"])
    np.testing.assert_allclose(bn, scale * pre / np.sqrt(1e-5 + 1e-5), rtol=1e-3, atol=1e-4)
    out = np.asarray(trunk["__call__"][0], np.float64)
    assert (bn < 0).mean() > 0.2 and (bn > 0).mean() > 0.2
    np.testing.assert_allclose(out, np.where(bn > 0, bn, 0.01 * bn), rtol=1e-5, atol=1e-6)


def test_heads_are_the_reference_layers():
    """D head and Q_ss: one linear layer on the trunk; Q_us: FC128-BN-lReLU-FC."""
    _, _, discriminator, _, d_vars = mnist_variables()
    images = jax.random.uniform(jax.random.PRNGKey(6), (8, 28, 28, 1))
    apply = jit(
        discriminator.apply,
        train=True,
        capture_intermediates=True,
        mutable=["intermediates", "batch_stats"],
    )
    out, inter = apply(d_vars, images)
    inter = inter["intermediates"]
    h = np.asarray(inter["trunk"]["__call__"][0], np.float64)
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), d_vars["params"])
    logit = h @ p["d_head"]["kernel"][:, 0] + p["d_head"]["bias"][0]
    np.testing.assert_allclose(out["logit"], logit, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        out["q"]["digit"], h @ p["q_ss"]["kernel"] + p["q_ss"]["bias"], rtol=1e-4, atol=1e-5
    )
    u = h @ p["q_us"]["Dense_0"]["kernel"] + p["q_us"]["Dense_0"]["bias"]
    u = (u - u.mean(0)) / np.sqrt(u.var(0) + 1e-5)  # Train mode: batch statistics.
    u = u * p["q_us"]["BatchNorm_0"]["scale"] + p["q_us"]["BatchNorm_0"]["bias"]
    u = np.where(u > 0, u, 0.01 * u)
    c_us = u @ p["q_us"]["Dense_1"]["kernel"] + p["q_us"]["Dense_1"]["bias"]
    np.testing.assert_allclose(out["q"]["c_us"], c_us, rtol=1e-3, atol=1e-4)


def test_train_mode_uses_batch_statistics_eval_mode_running_ones():
    layout, generator, _, g_vars, _ = mnist_variables()
    z = latents.generator_input(layout, latents.sample(jax.random.PRNGKey(7), layout, 8))
    shifted = jax.tree.map(lambda x: x, g_vars)
    shifted["batch_stats"] = jax.tree.map(lambda x: x + 3.0, g_vars["batch_stats"])
    apply_train = jit(generator.apply, train=True, mutable=["batch_stats"])
    train_a, _ = apply_train(g_vars, z)
    train_b, _ = apply_train(shifted, z)
    np.testing.assert_array_equal(train_a, train_b)
    apply_eval = jit(generator.apply, train=False)
    eval_a = apply_eval(g_vars, z)
    eval_b = apply_eval(shifted, z)
    assert np.abs(np.asarray(eval_a) - np.asarray(eval_b)).max() > 1e-3


@pytest.mark.parametrize("arch", ["infogan_mnist", "infogan_32"])
def test_bfloat16_models_share_the_float32_parameters_and_outputs(arch):
    """dtype='bfloat16' changes only the matmuls: the same parameter tree and initial values,
    float32 outputs and batch statistics, and outputs within bfloat16 rounding of float32."""
    layout = latents.LatentLayout.from_config(default.get_config().latents)
    shape = models.get_architecture(arch).image_shape
    z = latents.generator_input(layout, latents.sample(jax.random.PRNGKey(2), layout, 8))
    images = jax.random.uniform(jax.random.PRNGKey(3), (8, *shape))
    outputs = {}
    for dtype in ("float32", "bfloat16"):
        generator, discriminator = models.create_models(arch, layout, dtype=dtype)
        g_vars = jit(generator.init, train=False)(jax.random.PRNGKey(0), z)
        d_vars = jit(discriminator.init, train=False)(jax.random.PRNGKey(1), images)
        fake, g_new = jit(generator.apply, train=True, mutable=["batch_stats"])(g_vars, z)
        d_out, d_new = jit(discriminator.apply, train=True, mutable=["batch_stats"])(d_vars, images)
        outputs[dtype] = (g_vars, d_vars, fake, d_out, g_new, d_new)
    f32, bf16 = outputs["float32"], outputs["bfloat16"]
    for variables_32, variables_16 in zip(f32[:2], bf16[:2], strict=True):
        assert jax.tree.structure(variables_16) == jax.tree.structure(variables_32)
        jax.tree.map(np.testing.assert_array_equal, variables_16, variables_32)
    for a, b in zip(jax.tree.leaves(f32[2:]), jax.tree.leaves(bf16[2:]), strict=True):
        assert b.dtype == jnp.float32
        np.testing.assert_allclose(b, a, atol=0.05 * (np.abs(a).max() + 1e-3))


def test_unknown_dtype_is_a_clear_model_error():
    layout = latents.LatentLayout.from_config(default.get_config().latents)
    with pytest.raises(ValueError, match=r"model\.dtype"):
        models.create_models("infogan_mnist", layout, dtype="float16")


# Each architecture and each dtype once (every pair costs 10-20 s of compiles on 2 cores): a
# layer that one architecture alone has and that differs between the implementations (padding,
# stride, kernel layout) moves whole outputs, far beyond bfloat16's 3%. dcgan_64 with the D of
# configs/celeba.py:64 (no batch norm in its trunk).
@pytest.mark.parametrize(
    "arch, dtype, d_batch_norm",
    [
        ("infogan_mnist", "float32", True),
        ("infogan_32", "bfloat16", True),
        ("dcgan_64", "float32", False),
    ],
)
def test_conv_impls_share_parameters_values_and_gradients(arch, dtype, d_batch_norm):
    """conv_impl 'flax' (Flax's nn.Conv / nn.ConvTranspose) and 'cpu_fast' (layers.py): the
    same parameter tree and initial values (a checkpoint moves between them), and the same
    outputs, batch statistics and gradients (parameters and input) from the same variables:
    to float32 summation order, or in bfloat16 to 3% of each array's norm."""
    layout = latents.LatentLayout.from_config(default.get_config().latents)
    shape = models.get_architecture(arch).image_shape
    z = latents.generator_input(layout, latents.sample(jax.random.PRNGKey(2), layout, 8))
    images = jax.random.uniform(jax.random.PRNGKey(3), (8, *shape))
    nets = {
        impl: models.create_models(
            arch, layout, dtype=dtype, conv_impl=impl, d_batch_norm=d_batch_norm
        )
        for impl in ("flax", "cpu_fast")
    }
    inits = {}
    for impl, (generator, discriminator) in nets.items():
        g_vars = jit(generator.init, train=False)(jax.random.PRNGKey(0), z)
        d_vars = jit(discriminator.init, train=False)(jax.random.PRNGKey(1), images)
        inits[impl] = (g_vars, d_vars)
    for a, b in zip(inits["flax"], inits["cpu_fast"], strict=True):
        assert jax.tree.structure(a) == jax.tree.structure(b)
        jax.tree.map(np.testing.assert_array_equal, a, b)

    def outputs_and_grads(module, variables, x, cotangent_seed):
        def f(params, x):
            out, new = module.apply(
                {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
            )
            leaves = jax.tree.leaves(out)
            keys = jax.random.split(jax.random.PRNGKey(cotangent_seed), len(leaves))
            loss = sum(
                jnp.vdot(leaf, jax.random.normal(k, leaf.shape))
                for leaf, k in zip(leaves, keys, strict=True)
            )
            return loss, (out, new)

        grads, aux = jax.jit(jax.grad(f, argnums=(0, 1), has_aux=True))(variables["params"], x)
        return aux, grads

    for which, x in ((0, z), (1, images)):
        variables = inits["cpu_fast"][which]  # Equal to the 'flax' ones (checked above).
        got = {
            impl: outputs_and_grads(nets[impl][which], variables, x, which)
            for impl in ("flax", "cpu_fast")
        }
        expected, actual = jax.tree.leaves(got["flax"]), jax.tree.leaves(got["cpu_fast"])
        # Each leaf relative to its largest entry, floored at a thousandth of the largest entry
        # of all: a conv bias right before batch norm has a zero gradient, up to rounding. At
        # 64x64 a hundredth: that zero is a sum over 4x the positions (G's 32x32x64 upconv:
        # 7e-8 of the largest entry apart, where a thousandth allows 1e-7).
        floor_share = 1e-2 if shape[0] > 32 else 1e-3
        floor = floor_share * max(float(np.abs(np.asarray(a)).max()) for a in expected)
        for a, b in zip(expected, actual, strict=True):
            assert a.dtype == b.dtype == jnp.float32
            a, b = np.asarray(a), np.asarray(b)
            scale = max(float(np.abs(a).max()), floor)
            if dtype == "float32":
                np.testing.assert_allclose(b / scale, a / scale, rtol=0, atol=1e-4)
            else:  # Rounded differently (and amplified by batch norm) in single entries.
                assert np.linalg.norm(b - a) <= 3e-2 * max(np.linalg.norm(a), scale)


def test_auto_conv_impl_on_cpu_is_cpu_fast_and_unknown_is_an_error():
    layout = latents.LatentLayout.from_config(default.get_config().latents)
    generator, discriminator = models.create_models("infogan_mnist", layout)
    assert generator.conv_impl == discriminator.conv_impl == "cpu_fast"
    with pytest.raises(ValueError, match=r"model\.conv_impl"):
        models.create_models("infogan_mnist", layout, conv_impl="cudnn")


def test_q_ss_dropout_draws_each_examples_mask_from_its_key_in_training_only():
    keys = jax.random.split(jax.random.PRNGKey(0), 64)
    ones = jnp.ones((64, 50))
    dropped = np.asarray(models.dropout_per_example(keys, ones, 0.25))
    assert set(np.unique(dropped)) == {0.0, np.float32(1 / 0.75)}  # Kept ones are scaled.
    assert abs((dropped > 0).mean() - 0.75) < 0.03
    halves = [models.dropout_per_example(keys[i : i + 32], ones[:32], 0.25) for i in (0, 32)]
    np.testing.assert_array_equal(np.concatenate(halves), dropped)  # A split batch drops alike.
    _, _, plain = create_models(small_config())
    with_dropout = plain.clone(q_ss_dropout=0.5)
    images = jax.random.uniform(jax.random.PRNGKey(1), (8, 28, 28, 1))
    d_vars = jit(plain.init, train=False)(jax.random.PRNGKey(2), images)
    for train in (False, True):
        mutable = ["batch_stats"] if train else False
        keys = jax.random.split(jax.random.PRNGKey(3), 8) if train else None
        out = jit(with_dropout.apply, train=train, mutable=mutable)(
            d_vars, images, q_ss_dropout_keys=keys
        )
        want = jit(plain.apply, train=train, mutable=mutable)(d_vars, images)
        out, want = (o[0] if train else o for o in (out, want))
        np.testing.assert_array_equal(out["logit"], want["logit"])  # D's head reads no dropout.
        moved = float(jnp.abs(out["q"]["digit"] - want["q"]["digit"]).max())
        assert (moved > 1e-3) if train else (moved == 0.0), (train, moved)
    with pytest.raises(ValueError, match="q_ss_dropout_keys"):
        with_dropout.apply(d_vars, images, train=True, mutable=["batch_stats"])
