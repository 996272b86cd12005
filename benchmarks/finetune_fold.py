"""Issue 26 probes: fine-tuning recipes against frozen features on one grouped BUSI fold.

One outer fold of the benchmarks' duplicate-aware folds
(``StratifiedGroupKFold(5, shuffle=True, random_state=0)`` on
``find_duplicates`` groups; about 620 training and 156 test images), one
recipe per run, printing its balanced accuracy on the test part and the
seconds its fit took. A quick way to try a fine-tuning lever before the
5-fold table of ``benchmarks/quality.py``; one fold of 156 images is noisy
(a standard error of about 0.04), so a lever earns the full table, not a
verdict.

Recipes: ``default`` (``FineTuneClassifier()``), ``balanced`` (with
``class_weight="balanced"``), ``blocks`` (frozen ``"blocks"`` features, a
head per layer voting), ``probe`` (logistic regression on frozen
penultimate features), and ``lpft:UNFREEZE:LR:EPOCHS`` (LP-FT, Kumar et al.
2022: the head starts as that probe, then ``UNFREEZE`` groups train at
``LR`` for ``EPOCHS`` epochs with balanced class weights; the probe is put
in place by wrapping ``skorchlite.finetune.run.build_network``, until the
estimator can start its head from a probe itself), and
``blocks-lpft:UNFREEZE:LR:EPOCHS[:fix][:noaug]`` (LP-FT in the space of the
best frozen recipe: the network reads every ``"blocks"`` layer, pooled and
standardised, and its linear head starts as the frozen voting heads' summed
logits, so it starts out predicting exactly what ``blocks`` predicts; then
``UNFREEZE`` groups train at ``LR`` for ``EPOCHS`` epochs with a cosine
schedule; ``fix`` keeps the head as the voting heads, ``noaug`` trains
without augmentation). ``lpft`` takes flags: ``l2sp=ALPHA`` pulls the
backbone's weights back towards the pretrained ones (L2-SP, Li et al. 2018,
decoupled: each step moves a weight ``lr * ALPHA`` of the way back),
``ema=DECAY`` ends with an exponential moving average of the weights,
``novalid`` trains on the whole training part, ``seed=N`` sets its
``random_state`` (0 otherwise), ``size=PX`` its ``image_size``, ``us``
trains with ultrasound-plausible augmentation (``UltrasoundAugmentation``:
the default policy, then gain, depth attenuation and speckle), ``ta`` with
one TrivialAugment Wide operation after the default policy
(``TrivialAugmentation``). Recipes
joined by ``&`` are fitted each and scored as one, their log-probabilities
averaged: ``blocks&lpft:2:3e-4:6`` averages the frozen voting and LP-FT,
``lpft:2:3e-4:6:seed=0&lpft:2:3e-4:6:seed=1`` two seeds. A recipe prefixed ``vote+``
is also scored as the frozen ``"blocks"`` voting on its fine-tuned backbone
(the fine-tuned network's blocks feeding ``LayerVotingClassifier``).

``--classes benign malignant`` keeps those classes only (BUSI's two-class
task). Run: ``python benchmarks/finetune_fold.py FOLD RECIPE [RECIPE ...]``, e.g.
``python benchmarks/finetune_fold.py 0 default blocks lpft:2:3e-4:6``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _common import busi_arguments, duplicate_groups, grouped_folds, load_busi, machine
from PIL import Image, ImageEnhance, ImageOps
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from skorchlite import FineTuneClassifier, LayerVotingClassifier, PretrainedFeatureExtractor
from skorchlite.backbones import get_backbone
from skorchlite.finetune import loop, run
from skorchlite.finetune.augmentation import DefaultAugmentation
from skorchlite.networks import PooledNodes
from skorchlite.voting import default_layer_head

PROBE_C = 0.1


def probe(X: np.ndarray, y: np.ndarray) -> LogisticRegression:
    features = PretrainedFeatureExtractor().fit_transform(X)
    return LogisticRegression(C=PROBE_C, max_iter=3000, class_weight="balanced").fit(features, y)


def two_logits(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A linear model's weights with one row per class: a two-class model's
    single logit split into two that differ by it (the same softmax)."""
    if len(weight) > 1:
        return weight, bias
    return np.vstack([-weight / 2, weight / 2]), np.array([-bias[0] / 2, bias[0] / 2])


def start_heads_from(fitted: LogisticRegression) -> None:
    """Every network the fine-tuner builds from now on starts its head as ``fitted``."""
    build = run.build_network
    weight, bias = two_logits(fitted.coef_, fitted.intercept_)

    def with_probe(backbone, n_classes):
        network = build(backbone, n_classes)
        with torch.no_grad():
            network[1].weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            network[1].bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        return network

    run.build_network = with_probe


class BlocksBody(nn.Module):
    """``model``'s pooled ``nodes``, concatenated; its parameters keep the
    names they have in ``model``, so that the layer groups find them."""

    def __init__(self, model: nn.Module, nodes: tuple[str, ...]):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        traced = create_feature_extractor(model, {node: node for node in nodes})
        object.__setattr__(self, "traced", PooledNodes(traced, nodes, pooling="avg"))  # shares the children

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.traced(x)


class Standardise(nn.Module):
    def __init__(self, mean: np.ndarray, scale: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def start_from_voting(X: np.ndarray, y: np.ndarray, fix_head: bool) -> None:
    """Every network the fine-tuner builds from now on reads the ``"blocks"``
    layers and starts as the frozen voting heads fitted on ``X``."""
    voting = recipe("blocks", X, y).fit(X, y)[-1]
    scalers, heads = zip(*((e[0], e[-1]) for e in voting.estimators_), strict=True)
    weight = np.concatenate([h.coef_ for h in heads], axis=1)
    bias = np.sum([h.intercept_ for h in heads], axis=0)
    weight, bias = two_logits(weight, bias)
    mean = np.concatenate([s.mean_ for s in scalers])
    scale = np.concatenate([s.scale_ for s in scalers])

    def blocks_network(backbone, n_classes):
        body = BlocksBody(backbone.model, backbone.embedding_nodes("blocks", "avg"))
        linear = nn.Linear(weight.shape[1], n_classes)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        linear.requires_grad_(not fix_head)
        return nn.Sequential(body, nn.Sequential(Standardise(mean, scale), linear))

    run.build_network = blocks_network


def anchor_and_average(l2sp: float, ema: float) -> None:
    """Every optimiser the fine-tuner makes from now on pulls the backbone's
    weights back towards their pretrained values (L2-SP, Li et al. 2018, in
    decoupled form: each step moves a weight ``lr * l2sp`` of the way back),
    and every snapshot the trainer takes (the weights it ends with) is an
    exponential moving average of the weights with decay ``ema``."""
    make = loop.make_optimizer
    shadow: dict[str, torch.Tensor] = {}

    def anchored(head, body, *args, **kwargs):
        optimizer = make(head, body, *args, **kwargs)
        start = {p: p.detach().clone() for p in body.parameters() if p.requires_grad}
        network = nn.Sequential(body, head)
        shadow.clear()
        shadow.update({k: v.detach().clone() for k, v in network.state_dict().items()})

        def after_step(optimizer, args, kwargs):
            with torch.no_grad():
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        if l2sp and p in start:
                            p.add_(p - start[p], alpha=-group["lr"] * l2sp)
                if ema:
                    for k, v in network.state_dict().items():
                        if v.is_floating_point():
                            shadow[k].mul_(ema).add_(v, alpha=1 - ema)
                        else:
                            shadow[k].copy_(v)

        optimizer.register_step_post_hook(after_step)
        return optimizer

    loop.make_optimizer = anchored
    if ema:
        snapshot = loop.Trainer._snapshot

        def averaged(trainer):
            return {k: v.clone() for k, v in shadow.items()} if shadow else snapshot(trainer)

        loop.Trainer._snapshot = averaged


def finetuned_blocks(model: FineTuneClassifier, X: np.ndarray, y: np.ndarray):
    """Frozen voting on the ``"blocks"`` layers of ``model``'s fine-tuned backbone."""
    path = Path(tempfile.mkdtemp(prefix="finetune_fold-")) / "backbone.pth"  # read again at predict: kept
    torch.save(model.model_[0].state_dict(), path)
    widths = PretrainedFeatureExtractor(weights=path, layer="blocks").fit().layer_widths_
    voting = LayerVotingClassifier(widths, estimator=default_layer_head())
    return make_pipeline(PretrainedFeatureExtractor(weights=path, layer="blocks"), voting).fit(X, y)


@dataclass(frozen=True)
class UltrasoundAugmentation:
    """The default policy, then what changes between ultrasound machines and
    sessions: an overall gain, attenuation with depth (the image's rows
    darken towards the bottom) and multiplicative speckle, correlated over
    a few pixels (drawn at a quarter of the size, resized up)."""

    size: int
    seeded = True

    def __call__(self, image: Image.Image, seed: int) -> Image.Image:
        out = DefaultAugmentation(size=self.size)(image, seed)
        rng = np.random.default_rng([seed, 1])
        pixels = np.asarray(out, dtype=np.float32)
        depth = np.linspace(0.0, 1.0, self.size, dtype=np.float32)[:, None, None]
        pixels *= rng.uniform(0.8, 1.2) * np.exp(-rng.uniform(0.0, 0.6) * depth)
        if rng.random() < 0.5:
            k, side = rng.uniform(8.0, 30.0), max(self.size // 4, 1)
            noise = rng.gamma(k, 1 / k, (side, side)).astype(np.float32)
            grain = Image.fromarray(noise).resize((self.size, self.size), Image.Resampling.BILINEAR)
            pixels *= np.asarray(grain)[..., None]
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class TrivialAugmentation:
    """The default policy, then one operation of TrivialAugment Wide (Müller
    and Hutter 2021) at a uniform strength, drawn from ``seed`` (torchvision's
    own draws from the global generator, which the decoding threads share)."""

    size: int
    seeded = True

    def __call__(self, image: Image.Image, seed: int) -> Image.Image:
        out = DefaultAugmentation(size=self.size)(image, seed)
        rng = np.random.default_rng([seed, 2])
        m, sign = rng.uniform(0.0, 1.0), rng.choice([-1.0, 1.0])
        operations = [
            lambda i: i,
            lambda i: ImageOps.autocontrast(i),
            lambda i: ImageOps.equalize(i),
            lambda i: i.rotate(sign * 135 * m, resample=Image.Resampling.BILINEAR),
            lambda i: ImageOps.solarize(i, int(255 * (1 - m))),
            lambda i: ImageOps.posterize(i, int(8 - 6 * m)),
            lambda i: ImageEnhance.Contrast(i).enhance(1 + sign * 0.99 * m),
            lambda i: ImageEnhance.Brightness(i).enhance(1 + sign * 0.99 * m),
            lambda i: ImageEnhance.Sharpness(i).enhance(1 + sign * 0.99 * m),
            lambda i: i.transform(i.size, Image.Transform.AFFINE, (1, sign * 0.99 * m, 0, 0, 1, 0)),
            lambda i: i.transform(i.size, Image.Transform.AFFINE, (1, 0, 0, sign * 0.99 * m, 1, 0)),
            lambda i: i.transform(i.size, Image.Transform.AFFINE, (1, 0, sign * 32 * m, 0, 1, 0)),
            lambda i: i.transform(i.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, sign * 32 * m)),
        ]
        return operations[rng.integers(len(operations))](out)


def recipe(name: str, X: np.ndarray, y: np.ndarray):
    if name == "default":
        return FineTuneClassifier(random_state=0)
    if name == "balanced":
        return FineTuneClassifier(random_state=0, class_weight="balanced")
    if name == "blocks":
        widths = PretrainedFeatureExtractor(layer="blocks").fit().layer_widths_
        voting = LayerVotingClassifier(widths, estimator=default_layer_head())
        return make_pipeline(PretrainedFeatureExtractor(layer="blocks"), voting)
    if name == "probe":
        return make_pipeline(
            PretrainedFeatureExtractor(), LogisticRegression(C=PROBE_C, max_iter=3000, class_weight="balanced")
        )
    kind, unfreeze, lr, epochs, *flags = name.split(":")
    if kind == "lpft" and all(f.split("=")[0] in {"l2sp", "ema", "novalid", "seed", "size", "us", "ta"} for f in flags):
        start_heads_from(probe(X, y))
        settings = dict(f.split("=") if "=" in f else (f, "1") for f in flags)
        anchor_and_average(float(settings.get("l2sp", 0)), float(settings.get("ema", 0)))
        options = {"validation_fraction": 0.0} if "novalid" in settings else {}
        options |= {"random_state": int(settings.get("seed", 0))}
        options |= {"image_size": int(settings["size"])} if "size" in settings else {}
        policies = [p for flag, p in (("us", UltrasoundAugmentation), ("ta", TrivialAugmentation)) if flag in settings]
        if len(policies) > 1:
            raise SystemExit(f"{name!r}: one augmentation flag at most (us or ta)")
        if policies:
            # At the size the fine-tuner gives its own default policy: the preset's resize.
            preset = get_backbone("efficientnet_lite0").preprocessing.resized(options.get("image_size"))
            options["augment"] = policies[0](preset.resize_size)
    elif kind == "blocks-lpft" and set(flags) <= {"fix", "noaug"}:
        start_from_voting(X, y, fix_head="fix" in flags)
        groups = get_backbone("efficientnet_lite0").layer_groups
        options = dict(
            layer_groups=[list(g) for g in groups],
            schedule="cosine",
            warmup=0.1,
            validation_fraction=0.0,
            augment=None if "noaug" in flags else "default",
        )
    else:
        raise SystemExit(f"unknown recipe {name!r}")
    return FineTuneClassifier(
        unfreeze=unfreeze if unfreeze == "all" else int(unfreeze),
        lr=float(lr),
        epochs=int(epochs),
        freeze_epochs=0,
        class_weight="balanced",
        **({"random_state": 0} | options),
    )


def main() -> None:
    parser = busi_arguments(__doc__, quick=300)
    parser.add_argument("fold", type=int, choices=range(5))
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--classes", nargs="+", help="only these classes (e.g. benign malignant)")
    args = parser.parse_args()
    print(machine())
    X, y = load_busi(args.data, args.limit)
    if args.classes:
        if unknown := sorted(set(args.classes) - set(y.tolist())):
            parser.error(f"--classes: {unknown} not among BUSI's classes {sorted(set(y.tolist()))}")
        keep = np.isin(y, args.classes)
        X, y = X[keep], y[keep]
    train, test = list(grouped_folds().split(X, y, duplicate_groups(X, y)))[args.fold]
    # What a recipe patches (the network built, the optimiser, the snapshot),
    # put back before each, so that each recipe of one run starts from the library's own.
    patched = [(run, "build_network"), (loop, "make_optimizer"), (loop.Trainer, "_snapshot")]
    originals = [getattr(owner, name) for owner, name in patched]
    for name in args.recipes:
        start = time.perf_counter()
        models = []
        for member in name.split("&"):
            for (owner, attribute), original in zip(patched, originals, strict=True):
                setattr(owner, attribute, original)
            models.append(recipe(member.removeprefix("vote+"), X[train], y[train]).fit(X[train], y[train]))
        seconds = time.perf_counter() - start
        # Members average their log-probabilities, as the voting heads do.
        log_proba = np.mean([np.log(np.clip(m.predict_proba(X[test]), 1e-12, None)) for m in models], axis=0)
        score = balanced_accuracy_score(y[test], models[0].classes_[log_proba.argmax(axis=1)])
        print(f"fold {args.fold}  {name:24} balanced accuracy {score:.3f}  fit {seconds:.0f} s", flush=True)
        if name.startswith("vote+") and len(models) == 1:
            voting = finetuned_blocks(models[0], X[train], y[train])
            score = balanced_accuracy_score(y[test], voting.predict(X[test]))
            seconds = time.perf_counter() - start
            print(f"fold {args.fold}  {name + ' voting':24} balanced accuracy {score:.3f}  fit {seconds:.0f} s")


if __name__ == "__main__":
    main()
