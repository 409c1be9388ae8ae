"""Does regularising Q_ss let it read the real scenes better (issue 36 part 2)?

    python -m benchmarks.experiments.q_ss_regularisation --data_dir=<tfds dir with digit_scenes> \
        [--preset celeba] [--dropout 0,0.5] [--weight_decay 0] [--seeds 0,1] \
        [--steps 275,550,1100] [--out result.json]

G is trained to make Q_ss read its codes, so a code can be only as right as Q_ss reads it. In a
`configs/digit_scenes.py:<preset>` run Q_ss learns, until G's codes mean something, from the
labelled subset alone: its own trunk and head (`models.Discriminator`, `q_ss_trunk = 'own'`),
Adam at `optimizer.q_ss_learning_rate`, each labelled real shifted by up to
`loss.q_ss_max_shift` pixels. This trains exactly that, on the subset a run draws, for as many
labelled batches as the loop feeds it by a step (p(t) = 1.0, 0.9, ... 0.1 per 100 steps:
550 by step 1,000; 1,100 is about step 6,000), and reports what it reads on the whole test
split (accuracy per categorical code, correlation for a continuous one), for each setting:
`--dropout` on the features Q_ss's head reads (`model.q_ss_dropout`) and decoupled
`--weight_decay` on its Adam (AdamW). Each setting on each of `--seeds` (the initialisation
and the batch order).

Measured (2-core Xeon CPU shared with two other jobs, 2026-12-07; digit_scenes 2.1.0, `:celeba`'s
600 labelled scenes; seeds 0 / 1; results/q_ss_regularisation_celeba.json), Q_ss on the 10,000
test scenes after 550 / 1,100 labelled batches:

    --dropout 0 (the configs'):  thick_stroke 0.779 / 0.781, 0.801 / 0.798;
                                 neighbours 0.863 / 0.826, 0.891 / 0.885;
                                 rotation 0.689 / 0.739, 0.730 / 0.725 correlation
    --dropout 0.5:               thick_stroke 0.814 / 0.792, 0.831 / 0.828;
                                 neighbours 0.882 / 0.848, 0.909 / 0.893;
                                 rotation 0.765 / 0.769, 0.789 / 0.782 correlation

(dark_background and warm_foreground: 0.993-1.000 either way). Without dropout this reproduces
what Q_ss reads in a run (thick_stroke 0.77-0.80, docs/results.md). Weight decay: not yet
measured.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import digit_scenes
from ssinfogan_jax import augment, experiment, losses, train
from ssinfogan_jax.data import labeled_subset


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def read_scores(predict, layout, images, labels, batch: int = 1000) -> dict[str, float]:
    """What Q_ss reads on real images: accuracy per categorical code, correlation otherwise."""
    outputs = [predict(images[i : i + batch]) for i in range(0, len(images), batch)]
    scores = {}
    for c in layout.supervised_codes:
        q = np.concatenate([np.asarray(o[c.name]) for o in outputs])
        target = np.asarray(labels[c.label])
        if c.categorical:
            scores[c.name] = float(np.mean(q.argmax(-1) == target))
        else:
            scores[c.name] = float(np.corrcoef(q[:, 0], target.reshape(len(q), -1)[:, 0])[0, 1])
    return scores


def train_and_read(exp, data, dropout, weight_decay, seed, checkpoints) -> dict[int, dict]:
    (train_x, train_y), (test_x, test_y) = data
    layout = exp.layout
    discriminator = exp.models()[1].clone(q_ss_dropout=dropout)  # As model.q_ss_dropout.
    opt = exp.optimizer
    tx = optax.adamw(
        opt.q_ss_learning_rate, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=weight_decay
    )
    # Only Q_ss's parameters move; D's trunk and heads are computed for nothing (and pruned
    # by XLA: no loss reads them).
    tx = optax.multi_transform({"q_ss": tx, "d": optax.set_to_zero()}, train.q_ss_param_labels)
    rng = jax.random.PRNGKey(seed)
    variables = discriminator.init(rng, jnp.zeros((1, *train_x.shape[1:])), train=False)
    params, stats = variables["params"], variables.get("batch_stats", {})
    opt_state = tx.init(params)
    shift = functools.partial(
        augment.translate, max_shift=exp.augmentations.q_ss_max_shift, fill=-1.0
    )

    def q_of(p, images, train, key):
        out, _ = discriminator.apply(
            {"params": p, "batch_stats": stats},
            images,
            train=train,
            q_ss_dropout_keys=jax.random.split(key, len(images)),
            mutable=["batch_stats"],
        )
        return out["q"]

    @jax.jit
    def update(p, o, images, labels, key):
        shift_key, dropout_key = jax.random.split(key)
        images = jax.vmap(shift)(jax.random.split(shift_key, len(images)), images)
        masks = {name: jnp.ones(len(images), bool) for name in labels}

        def loss(p):
            return losses.supervised_loss(layout, q_of(p, images, True, dropout_key), labels, masks)

        grads = jax.grad(loss)(p)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o

    predict = jax.jit(lambda p, images: q_of(p, images, False, rng))
    order = np.random.default_rng(seed)
    scores = {}
    for step in range(1, max(checkpoints) + 1):
        chosen = order.choice(len(train_x), exp.batches.batch_size)
        labels = {c.label: train_y[c.label][chosen] for c in layout.supervised_codes}
        params, opt_state = update(
            params, opt_state, train_x[chosen], labels, jax.random.fold_in(rng, step)
        )
        if step in checkpoints:
            scores[step] = read_scores(functools.partial(predict, params), layout, test_x, test_y)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--preset", default="celeba")
    parser.add_argument("--dropout", type=_floats, default=[0.0, 0.5])
    parser.add_argument("--weight_decay", type=_floats, default=[0.0])
    parser.add_argument("--seeds", type=_ints, default=[0, 1])
    parser.add_argument("--steps", type=_ints, default=[275, 550, 1100])
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    config = digit_scenes.get_config(args.preset)
    config.data.data_dir = args.data_dir
    exp = experiment.from_config(config)
    train_x, train_y = exp.source.load_float("train")
    indices = labeled_subset.choose(exp.subset, train_y, exp.num_labeled)
    labelled = (train_x[indices], {k: v[indices] for k, v in train_y.items()})
    data = (labelled, exp.source.load_float("test"))
    rows = []
    for dropout, weight_decay, seed in itertools.product(
        args.dropout, args.weight_decay, args.seeds
    ):
        start = time.time()
        scores = train_and_read(exp, data, dropout, weight_decay, seed, set(args.steps))
        row = {
            "dropout": dropout,
            "weight_decay": weight_decay,
            "seed": seed,
            "seconds": round(time.time() - start),
            "scores": scores,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"labelled": len(indices), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
