"""Every loss term against a value computed by hand (closed form or plain numpy)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import experiment_of

from ssinfogan_jax import default_config as default
from ssinfogan_jax import latents, losses, train

CAT = latents.Code("digit", "categorical", 3, label="label")
CONT = latents.Code("c_us", "continuous", 2)


def softplus(x):
    return np.logaddexp(0.0, np.asarray(x, np.float64))


def log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def np_ce(logits, labels):
    return -log_softmax(logits)[np.arange(len(labels)), labels]


# --- GAN terms -------------------------------------------------------------------------------


def test_gan_losses_at_zero_logits_are_log_two():
    zeros = jnp.zeros(5)
    np.testing.assert_allclose(losses.gan_discriminator_loss(zeros, zeros), 2 * math.log(2), 1e-6)
    np.testing.assert_allclose(losses.gan_generator_loss(zeros), math.log(2), rtol=1e-6)


def test_gan_discriminator_loss_by_hand():
    real = np.array([2.0, -1.0, 0.5, 0.0], np.float32)
    fake = np.array([-1.5, 0.3, 1.0, -0.2], np.float32)
    # BCE(sigmoid(r), 1) = -log sigmoid(r) = softplus(-r); BCE(sigmoid(f), 0) = softplus(f).
    expected = softplus(-real).mean() + softplus(fake).mean()
    np.testing.assert_allclose(losses.gan_discriminator_loss(real, fake), expected, rtol=1e-6)
    # Real and fake are not interchangeable.
    assert abs(float(losses.gan_discriminator_loss(fake, real)) - expected) > 0.1


def test_gan_generator_loss_is_non_saturating_by_hand():
    fake = np.array([-3.0, 0.3, 1.0, -0.2], np.float32)
    expected = softplus(-fake).mean()  # -log D(G(z)), not log(1 - D(G(z))).
    np.testing.assert_allclose(losses.gan_generator_loss(fake), expected, rtol=1e-6)
    # Its gradient does not vanish for a confidently rejected fake (logit -3).
    grad = jax.grad(lambda f: losses.gan_generator_loss(f))(jnp.asarray(fake))
    np.testing.assert_allclose(grad[0], -(1 - 1 / (1 + math.exp(3.0))) / 4, rtol=1e-5)


# --- Code terms ------------------------------------------------------------------------------


def test_categorical_code_loss_is_cross_entropy():
    np.testing.assert_allclose(
        losses.code_loss(CAT, jnp.zeros((4, 3)), jnp.array([0, 1, 2, 0])), math.log(3), 1e-6
    )
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [-2.0, 1.0, 0.0]], np.float32)
    labels = np.array([0, 2, 0])
    expected = np_ce(logits, labels).mean()
    np.testing.assert_allclose(losses.code_loss(CAT, logits, labels), expected, rtol=1e-6)


def test_continuous_code_loss_is_mse_over_batch_and_dims():
    prediction = np.zeros((2, 2), np.float32)
    target = np.array([[1.0, -1.0], [0.5, 0.0]], np.float32)
    # (1 + 1 + 0.25 + 0) / 4, as Torch's MSECriterion (not a sum over dims, not a Gaussian NLL).
    np.testing.assert_allclose(losses.code_loss(CONT, prediction, target), 0.5625, rtol=1e-6)
    prediction = np.array([[0.2, 0.1], [-0.3, 0.9]], np.float32)
    expected = np.mean((prediction.astype(np.float64) - target) ** 2)
    np.testing.assert_allclose(losses.code_loss(CONT, prediction, target), expected, rtol=1e-6)


def test_one_dimensional_continuous_target_may_be_flat():
    code = latents.Code("t", "continuous", 1, label="t")
    prediction = np.array([[0.5], [-1.0], [2.0]], np.float32)
    target = np.array([0.0, 1.0, 2.0], np.float32)  # [B], as a data set label comes.
    np.testing.assert_allclose(losses.code_loss(code, prediction, target), (0.25 + 4) / 3, 1e-6)


def test_masked_mean_ignores_unlabelled_examples():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [-2.0, 1.0, 0.0], [0, 0, 9]], np.float32)
    labels = np.array([0, 99999, 1, -7], np.int32)  # Junk where the mask is 0.
    mask = np.array([1, 0, 1, 0], np.float32)
    expected = np_ce(logits[[0, 2]], labels[[0, 2]]).mean()  # Mean over labelled only.
    np.testing.assert_allclose(losses.code_loss(CAT, logits, labels, mask), expected, rtol=1e-6)
    prediction = np.array([[0.2, 0.1], [0.0, 0.0], [-0.3, 0.9]], np.float32)
    target = np.array([[1.0, -1.0], [np.nan, np.inf], [0.5, 0.0]], np.float32)
    mask = np.array([1, 0, 1], np.float32)
    expected = np.mean((prediction[[0, 2]].astype(np.float64) - target[[0, 2]]) ** 2)
    np.testing.assert_allclose(losses.code_loss(CONT, prediction, target, mask), expected, 1e-6)


@pytest.mark.parametrize("code", [CAT, CONT], ids=["categorical", "continuous"])
def test_masked_examples_get_exactly_zero_gradient(code):
    rng = np.random.default_rng(0)
    prediction = jnp.asarray(rng.normal(size=(4, code.size)), jnp.float32)
    if code.categorical:
        target = jnp.array([1, 2**30, 0, -1], jnp.int32)
    else:
        target = jnp.array([[0.5, 0.1], [np.nan, 1e30], [0.0, -0.4], [np.inf, -np.inf]])
    mask = jnp.array([1.0, 0.0, 1.0, 0.0])
    value, grad = jax.value_and_grad(losses.code_loss, argnums=1)(code, prediction, target, mask)
    assert np.isfinite(value)
    grad = np.asarray(grad)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[[1, 3]], 0.0)
    assert np.all(np.abs(grad[[0, 2]]).sum(-1) > 0)


@pytest.mark.parametrize("code", [CAT, CONT], ids=["categorical", "continuous"])
def test_all_zero_mask_gives_exactly_zero(code):
    prediction = jnp.ones((3, code.size)) * jnp.arange(3.0)[:, None]
    target = jnp.full((3,), -1, jnp.int32) if code.categorical else jnp.full((3, 2), jnp.nan)
    mask = jnp.zeros(3)
    value, grad = jax.value_and_grad(losses.code_loss, argnums=1)(code, prediction, target, mask)
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def test_codes_loss_sums_codes_with_weight_one():
    predictions = {"digit": jnp.zeros((2, 3)), "c_us": jnp.zeros((2, 2))}
    targets = {"digit": jnp.array([0, 2]), "c_us": jnp.array([[1.0, -1.0], [0.5, 0.0]])}
    total = losses.codes_loss((CAT, CONT), predictions, targets)
    np.testing.assert_allclose(total, math.log(3) + 0.5625, rtol=1e-6)
    assert float(losses.codes_loss((), predictions, targets)) == 0.0


def test_supervised_loss_is_keyed_by_label_name():
    layout = latents.LatentLayout(
        codes=(
            latents.Code("digit", "categorical", 3, label="label"),
            latents.Code("thickness", "continuous", 1, label="stroke"),
            latents.Code("c_us", "continuous", 2),  # Free: never compared with a label.
        ),
        noise_size=4,
    )
    predictions = {
        "digit": jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [-2.0, 1.0, 0.0]]),
        "thickness": jnp.array([[0.5], [-1.0], [2.0]]),
        "c_us": jnp.full((3, 2), 100.0),
    }
    labels = {"label": jnp.array([0, 5, 1]), "stroke": jnp.array([0.0, np.nan, 1.0])}
    mask = jnp.array([1.0, 0.0, 1.0])
    expected = np_ce(np.asarray(predictions["digit"])[[0, 2]], [0, 1]).mean()
    expected += ((0.5 - 0.0) ** 2 + (2.0 - 1.0) ** 2) / 2
    value = losses.supervised_loss(layout, predictions, labels, mask)
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    with pytest.raises(KeyError):  # Labels keyed by code name instead of label name.
        losses.supervised_loss(layout, predictions, {"digit": labels["label"]}, mask)


def test_code_accuracy():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [-2.0, 1.0, 0.0], [0.0, 9.0, 0.0]])
    labels = jnp.array([0, 2, 2, -1])
    np.testing.assert_allclose(losses.code_accuracy(CAT, logits, labels), 0.5)
    mask = jnp.array([1.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(losses.code_accuracy(CAT, logits, labels, mask), 1.0)
    assert float(losses.code_accuracy(CAT, logits, labels, jnp.zeros(4))) == 0.0


def test_consistency_loss_is_kl_for_categorical_and_mse_for_continuous():
    rng = np.random.default_rng(0)
    pred = {"digit": rng.normal(size=(4, 3)), "c_us": rng.normal(size=(4, 2))}
    moved = {"digit": rng.normal(size=(4, 3)), "c_us": rng.normal(size=(4, 2))}
    as_jnp = lambda d: {k: jnp.asarray(v, jnp.float32) for k, v in d.items()}
    log_p, log_q = log_softmax(pred["digit"]), log_softmax(moved["digit"])
    kl = np.mean(np.sum(np.exp(log_p) * (log_p - log_q), -1))
    mse = np.mean((pred["c_us"] - moved["c_us"]) ** 2)
    value = losses.consistency_loss([CAT, CONT], as_jnp(pred), as_jnp(moved))
    np.testing.assert_allclose(value, kl + mse, rtol=1e-5)
    assert float(losses.consistency_loss([CAT, CONT], as_jnp(pred), as_jnp(pred))) == 0.0
    # Only the shifted view is pulled: the unshifted predictions are targets.
    grad_pred, grad_moved = jax.grad(
        lambda a, b: losses.consistency_loss([CAT, CONT], a, b), argnums=(0, 1)
    )(as_jnp(pred), as_jnp(moved))
    assert all(float(jnp.abs(g).sum()) == 0.0 for g in grad_pred.values())
    assert all(float(jnp.abs(g).sum()) > 0.0 for g in grad_moved.values())


def test_mutual_information_lower_bound():
    targets = {"digit": jnp.array([0, 2]), "c_us": jnp.array([[1.0, -1.0], [0.5, 0.0]])}
    # An uninformative Q (uniform logits) gives H - CE = log 3 - log 3 = 0 for the categorical.
    cat_only = losses.mutual_information_lower_bound((CAT,), {"digit": jnp.zeros((2, 3))}, targets)
    np.testing.assert_allclose(cat_only, 0.0, atol=1e-6)
    # A perfect Q: categorical -> H = log 3; continuous (unit Gaussian Q, U(-1, 1) prior) ->
    # per dim log 2 - 0.5 log(2 pi), i.e. 2 dims: log(2 / pi).
    perfect = {"digit": 50.0 * jax.nn.one_hot(targets["digit"], 3), "c_us": targets["c_us"]}
    value = losses.mutual_information_lower_bound((CAT, CONT), perfect, targets)
    np.testing.assert_allclose(value, math.log(3) + math.log(2 / math.pi), rtol=1e-5)
    # Codes on U(-2, 2) have entropy log 4 per dim.
    value = losses.mutual_information_lower_bound((CONT,), perfect, targets, continuous_range=2.0)
    np.testing.assert_allclose(value, 2 * math.log(4) - math.log(2 * math.pi), rtol=1e-5)
    # General case by hand.
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    mu = np.array([[0.0, 0.0], [0.5, 1.0]])
    expected = math.log(3) - np_ce(logits, [0, 2]).mean()
    nll = 0.5 * math.log(2 * math.pi) + 0.5 * (mu - np.asarray(targets["c_us"])) ** 2
    expected += 2 * math.log(2) - nll.sum(-1).mean()
    preds = {"digit": jnp.asarray(logits), "c_us": jnp.asarray(mu)}
    value = losses.mutual_information_lower_bound((CAT, CONT), preds, targets)
    np.testing.assert_allclose(value, expected, rtol=1e-5)


# --- Weights ---------------------------------------------------------------------------------


def test_loss_weights_from_config_reference_values():
    weights = experiment_of(default.get_config()).weights
    assert (weights.lambda_ss_d, weights.lambda_us_d) == (2.0, 0.8)
    assert (weights.lambda_ss_g, weights.lambda_us_g) == (2.0, 0.8)
    assert weights.q_ss_on_fakes is False  # 600 labels: Q_ss sees real labelled data only.


@pytest.mark.parametrize(
    "num_labeled, fraction, override, expected",
    [
        (600, 0.01, None, False),
        (1, 0.01, None, False),
        (0, 0.01, None, True),  # No labels: the InfoGAN baseline.
        (-1, 0.01, None, False),  # By fraction, 1%.
        (-1, 0.0, None, True),  # By fraction, none.
        # By a fraction that rounds to 0 of MNIST's 60,000: no labels, so Q_ss must learn
        # from fakes (deciding this from the config fields alone once left Q_ss untrained).
        (-1, 0.000005, None, True),
        (600, 0.01, True, True),  # Explicit settings win.
        (0, 0.01, False, False),
    ],
)
def test_q_ss_on_fakes_auto_rule(num_labeled, fraction, override, expected):
    config = default.get_config()
    config.data.num_labeled = num_labeled
    config.data.labeled_fraction = fraction
    if override is not None:
        config.loss.q_ss_on_fakes = override
    assert experiment_of(config).weights.q_ss_on_fakes is expected


@pytest.mark.parametrize("num_labeled, expected", [(100, 1_000), (0, 0)])
def test_q_ss_on_fakes_start_applies_only_with_labels(num_labeled, expected):
    config = default.get_config()
    config.data.num_labeled = num_labeled
    config.loss.q_ss_on_fakes, config.loss.q_ss_on_fakes_start = True, 1_000
    weights = experiment_of(config).weights
    assert weights.q_ss_on_fakes_start == expected
    for step in (0, 999, 1_000, 5_000):
        on = step >= expected
        assert float(weights.ss_fake_weight(jnp.int32(step))) == (2.0 if on else 0.0), step


# --- The D and G totals, through the train step's loss functions ------------------------------

LAYOUT = latents.LatentLayout(
    codes=(latents.Code("digit", "categorical", 3, label="label"), CONT), noise_size=4
)


class StubDiscriminator(nn.Module):
    """Reads D's outputs straight off its 'image' [B, 1 + 3 + 2]: logit | Q digit | Q c_us."""

    @nn.compact
    def __call__(self, x, train=True):
        scale = self.param("scale", nn.initializers.ones, ())
        passes = self.variable("batch_stats", "passes", lambda: jnp.zeros(()))
        if train and not self.is_initializing():
            passes.value = passes.value + 1
        x = x * scale
        return {"logit": x[:, 0], "q": latents.split_outputs(LAYOUT.codes, x[:, 1:])}


REAL = np.array(
    [[2.0, 1.0, 0.0, -1.0, 9, 9], [-1.0, 0.5, 0.5, 3.0, 9, 9], [0.5, -2.0, 1.0, 0.0, 9, 9]],
    np.float32,
)  # Q_us outputs on reals (9) must not matter.
FAKE = np.array(
    [[-1.5, 0.0, 2.0, 0.0, 0.2, 0.1], [0.3, 1.0, 1.0, -1.0, -0.3, 0.9], [1.0, 0, 0, 0, 0, 0]],
    np.float32,
)
BATCH = {
    "label_masks": {"label": np.array([1, 1, 0], np.float32)},
    "labels": {"label": np.array([0, 2, -1])},
}
CODES = {"digit": np.array([1, 0, 2]), "c_us": np.array([[1.0, -1.0], [0.5, 0.0], [0.1, 0.2]])}


def hand_terms():
    d_gan = softplus(-REAL[:, 0]).mean() + softplus(FAKE[:, 0]).mean()
    d_ss_real = np_ce(REAL[:2, 1:4], [0, 2]).mean()  # Labelled reals only.
    us = np.mean((FAKE[:, 4:].astype(np.float64) - CODES["c_us"]) ** 2)
    ss_fake = np_ce(FAKE[:, 1:4], CODES["digit"]).mean()
    g_gan = softplus(-FAKE[:, 0]).mean()
    return d_gan, d_ss_real, us, ss_fake, g_gan


@pytest.mark.parametrize(
    "weights",
    [losses.LossWeights(), losses.LossWeights(3.0, 0.5, 1.5, 0.25)],
    ids=["reference", "other"],
)
def test_discriminator_total_by_hand(weights):
    d = StubDiscriminator()
    variables = d.init(jax.random.PRNGKey(0), REAL)
    loss, (stats, terms) = train.discriminator_loss(
        variables["params"], variables["batch_stats"], REAL, FAKE, BATCH, CODES,
        discriminator=d, layout=LAYOUT, weights=weights,
    )  # fmt: skip
    d_gan, d_ss_real, us, _, _ = hand_terms()
    expected = d_gan + weights.lambda_ss_d * d_ss_real + weights.lambda_us_d * us
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(terms["d_loss"], expected, rtol=1e-6)
    np.testing.assert_allclose(terms["d_gan"], d_gan, rtol=1e-6)
    np.testing.assert_allclose(terms["d_ss_real"], d_ss_real, rtol=1e-6)
    np.testing.assert_allclose(terms["d_us"], us, rtol=1e-6)
    assert "d_ss_fake" not in terms
    sigmoid = lambda x: 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(terms["d_real"], sigmoid(REAL[:, 0]).mean(), rtol=1e-6)
    np.testing.assert_allclose(terms["d_fake"], sigmoid(FAKE[:, 0]).mean(), rtol=1e-6)
    # Q_ss accuracy on the labelled reals: argmax [0, 2] vs labels [0, 2].
    np.testing.assert_allclose(terms["q_ss_real_acc/digit"], 1.0)
    # One train-mode pass over real and fake together (batch norm per half: test_train_step).
    assert float(stats["passes"]) == 1.0


def test_discriminator_total_of_the_infogan_baseline():
    d = StubDiscriminator()
    variables = d.init(jax.random.PRNGKey(0), REAL)
    unlabelled = {
        "label_masks": {"label": np.zeros(3, np.float32)},
        "labels": {"label": np.full(3, -1)},
    }
    weights = losses.LossWeights(q_ss_on_fakes=True)
    loss, (_, terms) = train.discriminator_loss(
        variables["params"], variables["batch_stats"], REAL, FAKE, unlabelled, CODES,
        discriminator=d, layout=LAYOUT, weights=weights,
    )  # fmt: skip
    d_gan, _, us, ss_fake, _ = hand_terms()
    assert float(terms["d_ss_real"]) == 0.0
    np.testing.assert_allclose(terms["d_ss_fake"], ss_fake, rtol=1e-6)
    np.testing.assert_allclose(loss, d_gan + 2.0 * ss_fake + 0.8 * us, rtol=1e-6)


@pytest.mark.parametrize(
    "weights",
    [losses.LossWeights(), losses.LossWeights(3.0, 0.5, 1.5, 0.25)],
    ids=["reference", "other"],
)
def test_generator_total_by_hand(weights):
    d = StubDiscriminator()
    variables = d.init(jax.random.PRNGKey(0), REAL)
    loss, terms = train.generator_loss(
        FAKE, variables["params"], variables["batch_stats"], CODES,
        discriminator=d, layout=LAYOUT, weights=weights,
    )  # fmt: skip
    _, _, us, ss_fake, g_gan = hand_terms()
    expected = g_gan + weights.lambda_ss_g * ss_fake + weights.lambda_us_g * us
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(terms["g_gan"], g_gan, rtol=1e-6)
    np.testing.assert_allclose(terms["g_ss"], ss_fake, rtol=1e-6)
    np.testing.assert_allclose(terms["g_us"], us, rtol=1e-6)
    # Code recovery on fakes: argmax [1, 0, 0] vs codes [1, 0, 2].
    np.testing.assert_allclose(terms["recovery_acc/digit"], 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(terms["recovery_mse/c_us"], us, rtol=1e-6)
    mi = math.log(3) - ss_fake
    nll = 0.5 * math.log(2 * math.pi) + 0.5 * (FAKE[:, 4:] - CODES["c_us"]) ** 2
    mi += 2 * math.log(2) - nll.sum(-1).mean()
    np.testing.assert_allclose(terms["mi_lower_bound"], mi, rtol=1e-5)
