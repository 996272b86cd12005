"""Issue 26 probes: fine-tuning recipes against frozen features on one grouped BUSI fold.

One outer fold of the benchmarks' duplicate-aware folds
(``StratifiedGroupKFold(5, shuffle=True, random_state=0)`` on
``find_duplicates`` groups; about 620 training and 156 test images), one
recipe per run, printing its balanced accuracy on the test part and the
seconds its fit took. A quick way to try a fine-tuning lever before the
5-fold table of ``benchmarks/quality.py``; one fold of 156 images is noisy
(a standard error of about 0.04), so a lever earns the full table, not a
verdict.

Recipes: ``default`` (``FineTuneClassifier()``: all layers, then a head per
``"blocks"`` layer voting; also scored through its linear head, the network's
own, from the same fit), ``grouped[:NAME=VALUE:...]`` (the defaults, or
those settings, each epoch passing one member of each duplicate group of
the training part, ``one_per_group``), ``lowres:PX:N[:NAME=VALUE:...]`` (the defaults, or those settings, the
first N epochs, head epochs included, on batches downscaled to PX px:
``low_resolution``), ``ema:DECAY[:NAME=VALUE:...]`` (the defaults, or those
settings, each phase ending with an exponential moving average of its
weights, ``anchor_and_average``), ``balanced`` (with ``class_weight="balanced"``),
``strategy`` (the fine-tuning of ``default_strategies``), ``blocks``
(frozen ``"blocks"`` features, a head per layer voting),
``ft:NAME=VALUE:...`` (``FineTuneClassifier`` with those parameters, e.g.
``ft:unfreeze=all:lr=5e-3``), ``probe`` (logistic regression on frozen
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
(``TrivialAugmentation``), ``ra`` with RandAugment's two operations at
magnitude 9 (``RandAugmentation``), ``mixup=ALPHA`` or ``cutmix=ALPHA``
mixes each training batch with itself shuffled (``mix_batches``). Recipes
joined by ``&`` are fitted each and scored as one, their log-probabilities
averaged (and each printed alone, from the same fits): ``blocks&lpft:2:3e-4:6`` averages the frozen voting and LP-FT,
``lpft:2:3e-4:6:seed=0&lpft:2:3e-4:6:seed=1`` two seeds. The ``lpft`` recipes
predict with their linear head (``head="linear"``), as when they were measured.

``--classes benign malignant`` keeps those classes only (BUSI's two-class
task); ``--views N`` also scores each recipe on N test-time views of each
test image (``views``: the image, its mirror, a central zoom and the corner
crops), their log-probabilities averaged. ``--sizes PX [PX ...]`` also refits a voting fine-tuner's
heads, from the same fit, on its body's ``"blocks"`` at each size, and at
its own size and each together; ``--cs C [C ...]`` refits them at its own size with
each ``C`` (``refitted_voting``). ``--inner`` scores each recipe on
the fold's inner folds instead of its test part: the 5 grouped folds of its
training part that ``compare_strategies`` (and so ``benchmarks/quality.py``)
scores every strategy on, each scored, then their mean, the figure its
selection compares. A recipe screened so is chosen without looking at any
outer test fold. Run: ``python benchmarks/finetune_fold.py FOLD RECIPE [RECIPE ...]``, e.g.
``python benchmarks/finetune_fold.py 0 default blocks lpft:2:3e-4:6``.
"""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass

import numpy as np
import torch
from _common import busi_arguments, busi_samples, class_arguments, duplicate_groups, machine
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
from skorchlite.finetune.voting_head import layer_widths
from skorchlite.folds import nested_folds
from skorchlite.images import check_images, load_rgb
from skorchlite.networks import PooledNodes
from skorchlite.strategies import default_strategies
from skorchlite.voting import default_layer_head

PROBE_C = 0.1
#: compare_strategies' default inner folds, which --inner scores on.
INNER_FOLDS = 5


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


def image_operations(m: float, sign: float, ranges: dict[str, float]) -> list:
    """The image operations of TrivialAugment and RandAugment at strength
    ``m`` (0 to 1) in direction ``sign``, each scaled by its ``ranges``
    (torchvision's "wide" ranges or RandAugment's; shifts in pixels)."""
    rotate, enhance, shear, shift = (ranges[k] * m * sign for k in ("rotate", "enhance", "shear", "shift"))
    return [
        lambda i: i,
        lambda i: ImageOps.autocontrast(i),
        lambda i: ImageOps.equalize(i),
        lambda i: i.rotate(rotate, resample=Image.Resampling.BILINEAR),
        lambda i: ImageOps.solarize(i, int(255 * (1 - m))),
        lambda i: ImageOps.posterize(i, int(8 - ranges["posterize"] * m)),
        lambda i: ImageEnhance.Contrast(i).enhance(1 + enhance),
        lambda i: ImageEnhance.Brightness(i).enhance(1 + enhance),
        lambda i: ImageEnhance.Sharpness(i).enhance(1 + enhance),
        lambda i: i.transform(i.size, Image.Transform.AFFINE, (1, shear, 0, 0, 1, 0)),
        lambda i: i.transform(i.size, Image.Transform.AFFINE, (1, 0, 0, shear, 1, 0)),
        lambda i: i.transform(i.size, Image.Transform.AFFINE, (1, 0, shift, 0, 1, 0)),
        lambda i: i.transform(i.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, shift)),
    ]


# torchvision's ranges of TrivialAugment Wide and of RandAugment (Cubuk et
# al. 2020), whose shift is 150/331 of the image's side.
WIDE_RANGES = {"rotate": 135.0, "enhance": 0.99, "shear": 0.99, "shift": 32.0, "posterize": 6.0}
RAND_RANGES = {"rotate": 30.0, "enhance": 0.9, "shear": 0.3, "posterize": 4.0}


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
        operations = image_operations(rng.uniform(0.0, 1.0), rng.choice([-1.0, 1.0]), WIDE_RANGES)
        return operations[rng.integers(len(operations))](out)


@dataclass(frozen=True)
class RandAugmentation:
    """The default policy, then RandAugment's two operations at its magnitude
    9 of 30 (Cubuk et al. 2020, torchvision's defaults), drawn from ``seed``."""

    size: int
    seeded = True

    def __call__(self, image: Image.Image, seed: int) -> Image.Image:
        out = DefaultAugmentation(size=self.size)(image, seed)
        rng = np.random.default_rng([seed, 3])
        for _ in range(2):
            ranges = RAND_RANGES | {"shift": 150 / 331 * self.size}
            operations = image_operations(9 / 30, rng.choice([-1.0, 1.0]), ranges)
            out = operations[rng.integers(len(operations))](out)
        return out


def mix_batches(alpha: float, cut: bool) -> None:
    """Every training step from now on mixes its batch with a shuffled copy
    of itself, a Beta(``alpha``, ``alpha``) share ``lam`` of the first:
    MixUp (Zhang et al. 2018) blends the pixels, CutMix (Yun et al. 2019,
    ``cut``) pastes a box of ``1 - lam`` of the area; the loss is the same
    blend of the two images' losses."""
    network = loop.Trainer._training_network
    loss = loop.weighted_loss
    rng = np.random.default_rng(0)
    mixed: list[tuple[float, torch.Tensor]] = []

    def mixing(trainer):
        net = network(trainer)

        def forward(x: torch.Tensor) -> torch.Tensor:
            lam, order = float(rng.beta(alpha, alpha)), torch.as_tensor(rng.permutation(len(x)))
            if cut:
                h, w = x.shape[-2:]
                bh, bw = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
                top, left = rng.integers(h - bh + 1), rng.integers(w - bw + 1)
                x = x.clone()
                x[..., top : top + bh, left : left + bw] = x[order][..., top : top + bh, left : left + bw]
                lam = 1 - bh * bw / (h * w)
            else:
                x = lam * x + (1 - lam) * x[order]
            mixed.append((lam, order))
            return net(x)

        return forward

    def mixed_loss(logits, target, weight, smoothing):
        if not mixed:  # validation: the images as they are
            return loss(logits, target, weight, smoothing)
        lam, order = mixed.pop()
        return lam * loss(logits, target, weight, smoothing) + (1 - lam) * loss(
            logits, target[order], weight[order], smoothing
        )

    loop.Trainer._training_network = mixing
    loop.weighted_loss = mixed_loss


def views(X: np.ndarray, n: int) -> list[list[Image.Image]]:
    """``n`` test-time views of each image: as it is, mirrored, then a
    central zoom to 7/8 of each side, mirrored, then the four corner 7/8
    crops."""
    images = [load_rgb(sample, index) for index, sample in enumerate(check_images(X))]

    def crop(i: Image.Image, x: float, y: float) -> Image.Image:
        w, h = int(i.width * 7 / 8), int(i.height * 7 / 8)
        left, top = int((i.width - w) * x), int((i.height - h) * y)
        return i.crop((left, top, left + w, top + h))

    transforms = [
        lambda i: i,
        ImageOps.mirror,
        lambda i: crop(i, 0.5, 0.5),
        lambda i: ImageOps.mirror(crop(i, 0.5, 0.5)),
        *(lambda i, x=x, y=y: crop(i, x, y) for x, y in ((0, 0), (1, 0), (0, 1), (1, 1))),
    ]
    return [[t(i) for i in images] for t in transforms[:n]]


def literal(text: str):
    """A Python literal (``5e-3``, ``True``, ``None``), else the text itself (``all``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def one_per_group(groups: np.ndarray) -> None:
    """Each training epoch passes one member of each duplicate group (of
    ``groups``, a group id per row of the fit's images), drawn afresh each
    epoch from the trainer's seeded stream; the schedule is sized to those
    shorter epochs. Fewer image-passes where near-duplicates repeat a lesion."""
    run_phase, train_epoch = loop.Trainer._run_phase, loop.Trainer._train_epoch

    def first_of_each_group(rows: np.ndarray) -> np.ndarray:
        return rows[np.unique(groups[rows], return_index=True)[1]]

    def grouped_phase(self, phase) -> bool:
        self.all_rows = self.train
        # As many rows as each epoch will pass, so that the phase sizes its schedule to them.
        self.train = first_of_each_group(self.all_rows)
        try:
            return run_phase(self, phase)
        finally:
            self.train = self.all_rows

    def grouped_epoch(self, *args):
        order = self.all_rows[torch.randperm(len(self.all_rows), generator=self.generator).numpy()]
        self.train = np.sort(first_of_each_group(order))
        return train_epoch(self, *args)

    loop.Trainer._run_phase = grouped_phase
    loop.Trainer._train_epoch = grouped_epoch


def low_resolution(size: int, n_epochs: int) -> None:
    """The first ``n_epochs`` epochs of each fit (head epochs included) train
    on their augmented batches downscaled to ``size`` px (bilinear,
    antialiased), as progressive resizing does (fastai; FixRes, Touvron et
    al. 2019: a network trained on random crops at a lower resolution than
    it is tested at loses little): fewer multiply-adds where the learning
    rate is high, the full resolution for the last epochs."""
    train_epoch = loop.Trainer._train_epoch

    def smaller_epoch(self, *args):
        if len(self._history) >= n_epochs:
            return train_epoch(self, *args)
        batches = self.inputs.training_batches

        def downscaled(*batch_args):
            for rows, batch in batches(*batch_args):
                small = nn.functional.interpolate(batch, size=(size, size), mode="bilinear", antialias=True)
                yield rows, small.contiguous(memory_format=torch.channels_last)

        self.inputs.training_batches = downscaled
        try:
            return train_epoch(self, *args)
        finally:
            del self.inputs.training_batches  # the class's method again

    loop.Trainer._train_epoch = smaller_epoch


def recipe(name: str, X: np.ndarray, y: np.ndarray):
    if name == "default":
        return FineTuneClassifier(random_state=0)
    if name == "balanced":
        return FineTuneClassifier(random_state=0, class_weight="balanced")
    if name == "strategy":
        return default_strategies(["efficientnet_lite0"])[-1].estimator
    kind, *rest = name.split(":")
    if kind == "lowres":
        if len(rest) < 2 or not (rest[0].isdigit() and rest[1].isdigit()):
            raise SystemExit(f"{name!r}: lowres:PX:N[:NAME=VALUE:...], PX and N whole numbers")
        size, n_epochs, *rest = rest
        low_resolution(int(size), int(n_epochs))
    if kind == "ema":
        decay = literal(rest.pop(0)) if rest else None
        if not isinstance(decay, float) or not 0 < decay < 1:
            raise SystemExit(f"{name!r}: ema:DECAY[:NAME=VALUE:...], DECAY between 0 and 1 such as 0.98")
        anchor_and_average(0.0, decay)
    if name.startswith("ft:") or kind in ("grouped", "lowres", "ema"):
        pairs = [setting.split("=", 1) for setting in rest]
        if any(len(pair) != 2 for pair in pairs):
            raise SystemExit(f"{name!r}: each setting after '{kind}:' is NAME=VALUE")
        settings = dict(pairs)
        if kind == "grouped":
            one_per_group(duplicate_groups(X, y))
        return FineTuneClassifier(**{"random_state": 0} | {k: literal(v) for k, v in settings.items()})
    if name == "blocks":
        widths = PretrainedFeatureExtractor(layer="blocks").fit().layer_widths_
        voting = LayerVotingClassifier(widths, estimator=default_layer_head())
        return make_pipeline(PretrainedFeatureExtractor(layer="blocks"), voting)
    if name == "probe":
        return make_pipeline(
            PretrainedFeatureExtractor(), LogisticRegression(C=PROBE_C, max_iter=3000, class_weight="balanced")
        )
    kind, unfreeze, lr, epochs, *flags = name.split(":")
    if kind == "lpft" and all(
        f.split("=")[0] in {"l2sp", "ema", "novalid", "seed", "size", "us", "ta", "ra", "mixup", "cutmix"}
        for f in flags
    ):
        start_heads_from(probe(X, y))
        settings = dict(f.split("=") if "=" in f else (f, "1") for f in flags)
        anchor_and_average(float(settings.get("l2sp", 0)), float(settings.get("ema", 0)))
        options = {"validation_fraction": 0.0} if "novalid" in settings else {}
        options |= {"random_state": int(settings.get("seed", 0))}
        options |= {"image_size": int(settings["size"])} if "size" in settings else {}
        flagged = (("us", UltrasoundAugmentation), ("ta", TrivialAugmentation), ("ra", RandAugmentation))
        policies = [p for flag, p in flagged if flag in settings]
        if len(policies) > 1:
            raise SystemExit(f"{name!r}: one augmentation flag at most (us, ta or ra)")
        if "mixup" in settings and "cutmix" in settings:
            raise SystemExit(f"{name!r}: mixup or cutmix, not both")
        if mixing := [f for f in ("mixup", "cutmix") if f in settings]:
            mix_batches(float(settings[mixing[0]]), cut=mixing[0] == "cutmix")
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
        head="linear",
        **({"random_state": 0} | options),
    )


def log_probabilities(models: list, inputs: list) -> list[np.ndarray]:
    """Each model's log-probabilities on each of ``inputs`` (the same images,
    seen one way in each), model by model."""
    return [np.log(np.clip(m.predict_proba(X), 1e-12, None)) for m in models for X in inputs]


def averaged_score(classes: np.ndarray, log_probas: list[np.ndarray], y: np.ndarray) -> float:
    """Balanced accuracy of ``log_probas`` averaged, as the voting heads average theirs."""
    return balanced_accuracy_score(y, classes[np.mean(log_probas, axis=0).argmax(axis=1)])


def main() -> None:
    parser = busi_arguments(__doc__, quick=300)
    parser.add_argument("fold", type=int, choices=range(5))
    parser.add_argument("recipes", nargs="+")
    class_arguments(parser)
    parser.add_argument("--views", type=int, choices=range(2, 9), help="also score with this many test-time views")
    parser.add_argument("--inner", action="store_true", help="score on the fold's 5 inner folds, not its test part")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="also refit a voting fine-tuner's heads on its body at these sizes"
    )
    parser.add_argument(
        "--cs", type=float, nargs="+", help="also refit a voting fine-tuner's heads with these C (default head 0.03)"
    )
    args = parser.parse_args()
    print(machine())
    X, y = busi_samples(parser, args)
    # compare_strategies' own folds: the outer ones are the benchmarks' grouped_folds(),
    # the inner ones rows of each outer training part.
    outer, inner = nested_folds(y, duplicate_groups(X, y), [(INNER_FOLDS, FineTuneClassifier())], 5)
    train, test = outer[args.fold]
    if args.inner:
        parts = [
            (f"fold {args.fold} inner {k + 1}/{INNER_FOLDS}", train[a], train[b])
            for k, (a, b) in enumerate(inner[args.fold, INNER_FOLDS])
        ]
    else:
        parts = [(f"fold {args.fold}", train, test)]
    for name in args.recipes:
        scores = [
            score_recipe(name, X, y, fit_rows, score_rows, label, args.views, args.sizes or [], args.cs or [])
            for label, fit_rows, score_rows in parts
        ]
        if args.inner:
            columns = ("", f" {args.views} views", " linear head", *refit_columns(args.sizes or [], args.cs or []))
            for column, values in zip(columns, zip(*scores, strict=True), strict=True):
                if None not in values:
                    print(f"fold {args.fold}  {name + column:24} inner mean {np.mean(values):.3f}", flush=True)


# What a recipe patches (the network built, the optimiser, the snapshot),
# put back before each, so that each recipe of one run starts from the library's own.
PATCHED = [
    (run, "build_network"),
    (loop, "make_optimizer"),
    (loop, "weighted_loss"),
    (loop.Trainer, "_snapshot"),
    (loop.Trainer, "_training_network"),
    (loop.Trainer, "_run_phase"),
    (loop.Trainer, "_train_epoch"),
]
ORIGINALS = [getattr(owner, name) for owner, name in PATCHED]


def refit_columns(sizes: list[int], cs: list[float]) -> list[str]:
    """The names of :func:`refitted_voting`'s scores."""
    return (
        [f" voting at {size} px" for size in sizes]
        + [f" voting at own+{size} px" for size in sizes]
        + [f" voting C={c:g}" for c in cs]
    )


def refitted_voting(
    model: FineTuneClassifier, X: np.ndarray, y: np.ndarray, train, test, sizes: list[int], cs: list[float]
) -> list:
    """Balanced accuracy on ``test`` of voting heads fitted, as the fine-tuner
    fits its own without class weights (each a balanced
    :func:`~skorchlite.voting.default_layer_head`), on the fitted body's ``"blocks"`` at each of ``sizes``
    (FixRes, Touvron et al. 2019: a network trained on random crops sees
    objects larger than a centre crop shows them), then at its own size and
    each of ``sizes`` together (a head per layer and size, as the frozen
    recipe at 224 and 288 px), then at its own size with each head's
    inverse regularisation ``C`` set to each of ``cs`` (the default head's is 0.03)."""
    settings = model.get_params()

    def blocks(size: int | None) -> tuple[np.ndarray, np.ndarray]:
        model.set_params(layer="blocks", image_size=size)
        return model.transform(X[train]), model.transform(X[test])

    def score(parts: list[tuple[np.ndarray, np.ndarray]], c: float | None = None) -> float:
        head = default_layer_head()
        if c is not None:
            head.set_params(logisticregression__C=c)
        voting = LayerVotingClassifier(widths * len(parts), estimator=head)
        voting.fit(np.hstack([fit_part for fit_part, _ in parts]), y[train])
        return balanced_accuracy_score(y[test], voting.predict(np.hstack([test_part for _, test_part in parts])))

    widths = layer_widths(model, "blocks")
    own = blocks(settings["image_size"])
    resized = [blocks(size) for size in sizes]
    model.set_params(layer=settings["layer"], image_size=settings["image_size"])
    return (
        [score([part]) for part in resized] + [score([own, part]) for part in resized] + [score([own], c) for c in cs]
    )


def score_recipe(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    label: str,
    n_views: int | None,
    sizes: list[int],
    cs: list[float],
) -> tuple[float | None, ...]:
    """Fit recipe ``name`` on ``train``, print and return its balanced accuracy on
    ``test``: as it predicts, on ``n_views`` views, through its linear head,
    and through voting heads refitted at ``sizes`` and ``cs`` (:func:`refitted_voting`)
    (``None`` where not asked for or not a voting fine-tuner)."""
    start = time.perf_counter()
    models = []
    for member in name.split("&"):
        for (owner, attribute), original in zip(PATCHED, ORIGINALS, strict=True):
            setattr(owner, attribute, original)
        models.append(recipe(member, X[train], y[train]).fit(X[train], y[train]))
    seconds = time.perf_counter() - start
    classes = models[0].classes_
    each = log_probabilities(models, [X[test]])
    score = averaged_score(classes, each, y[test])
    print(f"{label}  {name:24} balanced accuracy {score:.3f}  fit {seconds:.0f} s", flush=True)
    if len(models) > 1:
        members = [averaged_score(classes, [member], y[test]) for member in each]
        print(f"{label}  {name:24} each alone " + ", ".join(f"{s:.3f}" for s in members), flush=True)
    viewed = linear = None
    if n_views:
        viewed = averaged_score(classes, log_probabilities(models, views(X[test], n_views)), y[test])
        print(f"{label}  {name + f' {n_views} views':24} balanced accuracy {viewed:.3f}", flush=True)
    if len(models) == 1 and getattr(models[0], "voting_head_", None) is not None:
        models[0].set_params(head="linear")  # the network's own head, from the same fit
        linear = balanced_accuracy_score(y[test], models[0].predict(X[test]))
        print(f"{label}  {name + ' linear head':24} balanced accuracy {linear:.3f}", flush=True)
        models[0].set_params(head="voting")
    resized: list[float | None] = [None] * (2 * len(sizes) + len(cs))
    if (sizes or cs) and len(models) == 1 and getattr(models[0], "voting_head_", None) is not None:
        resized = refitted_voting(models[0], X, y, train, test, sizes, cs)
        for column, value in zip(refit_columns(sizes, cs), resized, strict=True):
            print(f"{label}  {name + column:24} balanced accuracy {value:.3f}", flush=True)
    return score, viewed, linear, *resized


if __name__ == "__main__":
    main()
