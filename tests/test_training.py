"""Pieces of a fine-tuning step: schedule, optimiser groups, freezing, loss, folded BatchNorm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skorchlite.backbones import get_backbone
from skorchlite.finetune.steps import (
    fold_frozen_batchnorm,
    make_optimizer,
    make_schedule,
    set_trainable,
    weighted_loss,
)

LR = 1e-2


@pytest.fixture(scope="module")
def lite0():
    """A private copy of EfficientNet-Lite0 and its 9 layer groups."""
    backbone = get_backbone("efficientnet_lite0", copy_model=True)
    assert len(backbone.layer_groups) == 9
    return backbone


def _factors(kind, total=100, warmup=0.25):
    """The schedule's multiplier at steps 0..total (inclusive)."""
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    factor = make_schedule(optimizer, kind, total, warmup).lr_lambdas[0]
    return np.array([factor(step) for step in range(total + 1)])


def _group_of(params_by_group, param):
    hits = [g for g in params_by_group if any(p is param for p in g["params"])]
    assert len(hits) <= 1, "a parameter sits in two optimiser groups"
    return hits[0] if hits else None


# ------------------------------------------------------------- schedule
def test_onecycle_rises_from_a_25th_to_the_peak_then_anneals_to_nearly_zero():
    f = _factors("onecycle")
    assert f[0] == pytest.approx(1 / 25)
    assert f[25] == pytest.approx(1.0)  # peak at the end of warm-up
    assert f.argmax() == 25
    assert np.all(np.diff(f[:26]) > 0), "warm-up must rise"
    assert np.all(np.diff(f[25:]) < 0), "annealing must fall"
    assert f[99] < 1e-3  # the last training step
    assert f[100] == pytest.approx(1 / 25 / 1e4)


def test_cosine_warms_up_linearly_from_near_zero_and_ends_at_zero():
    f = _factors("cosine")
    assert f[0] < 0.05
    assert f[25] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(f[:26]), np.diff(f[:26])[0])  # linear warm-up
    assert np.all(np.diff(f[25:]) < 0)
    assert f[100] == pytest.approx(0.0, abs=1e-12)


def test_no_schedule_is_constant():
    np.testing.assert_array_equal(_factors(None), 1.0)


@pytest.mark.parametrize("warmup", [0.0, 1.0])
def test_extreme_warmup_fractions_stay_finite_and_bounded(warmup):
    for kind in ("onecycle", "cosine"):
        f = _factors(kind, total=7, warmup=warmup)
        assert np.isfinite(f).all() and f.min() >= 0 and f.max() <= 1 + 1e-12


def test_schedule_scales_every_parameter_group_alike():
    a, b = nn.Parameter(torch.zeros(2, 2)), nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.25}], lr=1.0)
    schedule = make_schedule(optimizer, "onecycle", 8, 0.25)
    expected = _factors("onecycle", total=8)
    for step in range(8):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected[step])
        assert optimizer.param_groups[1]["lr"] == pytest.approx(0.25 * expected[step])
        optimizer.step()
        schedule.step()


# ------------------------------------------------------------- freezing
@pytest.mark.parametrize("n_unfrozen", [0, 2, 9])
def test_set_trainable_returns_the_frozen_modules_and_sets_requires_grad(lite0, n_unfrozen):
    body, groups = lite0.model, lite0.layer_groups
    frozen = set_trainable(body, groups, n_unfrozen)
    split = 9 - n_unfrozen
    expected = [body.get_submodule(name) for group in groups[:split] for name in group]
    assert len(frozen) == len(expected) and all(a is b for a, b in zip(frozen, expected, strict=True))
    for i, group in enumerate(groups):
        for name in group:
            for param in body.get_submodule(name).parameters():
                assert param.requires_grad == (i >= split), (name, i)
    # "_blocks.1" must not capture "_blocks.10"...: every parameter is in exactly one group.
    owned = [p for group in groups for name in group for p in body.get_submodule(name).parameters()]
    assert len({id(p) for p in owned}) == len(owned) == len(list(body.parameters()))


def test_set_trainable_batchnorm_eval_adds_the_unfrozen_batchnorm_layers(lite0):
    body, groups = lite0.model, lite0.layer_groups
    in_eval = set_trainable(body, groups, 2, batchnorm="eval")
    frozen = set_trainable(body, groups, 2)
    added = in_eval[len(frozen) :]
    assert in_eval[: len(frozen)] == frozen
    unfrozen = [m for group in groups[7:] for name in group for m in body.get_submodule(name).modules()]
    expected = [m for m in unfrozen if isinstance(m, nn.BatchNorm2d)]
    assert expected and len(added) == len(expected) and all(a is b for a, b in zip(added, expected, strict=True))


def test_set_trainable_refreezes(lite0):
    body, groups = lite0.model, lite0.layer_groups
    set_trainable(body, groups, 9)
    set_trainable(body, groups, 1)
    assert not any(p.requires_grad for name in groups[0] for p in body.get_submodule(name).parameters())
    assert all(p.requires_grad for name in groups[-1] for p in body.get_submodule(name).parameters())


# ------------------------------------------------------------- optimiser
@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_make_optimizer_discriminative_rates_and_no_decay_on_1d_params(lite0, name):
    body, groups = lite0.model, lite0.layer_groups
    head = nn.Linear(lite0.embedding_dim, 3)
    set_trainable(body, groups, 2)
    optimizer = make_optimizer(head, body, groups, 2, name=name, lr=LR, lr_decay=0.5, weight_decay=0.01, momentum=0.9)
    assert isinstance(optimizer, torch.optim.AdamW if name == "adamw" else torch.optim.SGD)
    pg = optimizer.param_groups

    def check(param, lr):
        group = _group_of(pg, param)
        assert group is not None
        assert group["lr"] == pytest.approx(lr)
        assert group["weight_decay"] == (0.01 if param.ndim > 1 else 0.0)

    for param in head.parameters():
        check(param, LR)
    rate_of_group = {8: LR * 0.5, 7: LR * 0.25}
    for i, group in enumerate(groups):
        for module_name in group:
            for param in body.get_submodule(module_name).parameters():
                if i in rate_of_group:
                    check(param, rate_of_group[i])
                else:
                    assert _group_of(pg, param) is None, f"frozen group {i} is in the optimiser"
    one_d = [p for g in pg for p in g["params"] if p.ndim == 1]
    assert one_d and all(_group_of(pg, p)["weight_decay"] == 0.0 for p in one_d)
    if name == "sgd":
        assert all(g["momentum"] == 0.9 and g["nesterov"] for g in pg)


def test_make_optimizer_head_only_and_sgd_without_momentum(lite0):
    body, groups = lite0.model, lite0.layer_groups
    head = nn.Linear(lite0.embedding_dim, 2)
    set_trainable(body, groups, 0)
    optimizer = make_optimizer(head, body, groups, 0, name="sgd", lr=LR, lr_decay=0.5, weight_decay=0.0, momentum=0.0)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in params} == {id(p) for p in head.parameters()}
    assert not any(g["nesterov"] for g in optimizer.param_groups)  # torch refuses nesterov without momentum


# ------------------------------------------------------------- loss
def test_weighted_loss_is_the_weighted_sum_the_caller_divides():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0], [0.0, 1.0]])
    target = torch.tensor([0, 1, 1, 0])
    ce = -torch.log_softmax(logits, 1)[torch.arange(4), target]
    weight = torch.tensor([0.5, 2.0, 1.0, 0.0])
    got = weighted_loss(logits, target, weight, 0.0)
    assert got.item() == pytest.approx((ce * weight).sum().item(), rel=1e-6)
    # Unit weights over the rows: the plain mean; label smoothing is passed on.
    assert (weighted_loss(logits, target, torch.ones(4), 0.0) / 4).item() == pytest.approx(ce.mean().item(), rel=1e-6)
    smooth = F.cross_entropy(logits, target, label_smoothing=0.2)
    assert (weighted_loss(logits, target, torch.ones(4), 0.2) / 4).item() == pytest.approx(smooth.item(), rel=1e-6)


def test_weighted_loss_of_a_batch_with_only_zero_weights_is_zero_not_nan():
    logits = torch.randn(3, 2, requires_grad=True)
    loss = weighted_loss(logits, torch.tensor([0, 1, 0]), torch.zeros(3), 0.0) / 3
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and not logits.grad.any()


# ------------------------------------------------------------- folded BatchNorm
@pytest.mark.parametrize("batchnorm", ["eval", "train"])
def test_folded_batchnorm_view_gives_the_same_outputs_and_gradients(batchnorm):
    backbone = get_backbone("efficientnet_lite0", copy_model=True)
    body = backbone.model
    set_trainable(body, backbone.layer_groups, len(backbone.layer_groups), batchnorm=batchnorm)
    body.train()
    for module in set_trainable(body, backbone.layer_groups, len(backbone.layer_groups), batchnorm=batchnorm):
        module.eval()
    view = fold_frozen_batchnorm(body)
    folded = [m for m in view.modules() if type(m).__name__ == "_ConvBatchNorm"]
    assert len(folded) == 49  # every conv -> BatchNorm pair of EfficientNet-Lite0
    assert {id(p) for p in view.parameters()} == {id(p) for p in body.parameters()}  # shared, not copied
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for network in (body, view):
        body.zero_grad()
        torch.manual_seed(0)
        out = network(x)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in body.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-4, atol=1e-4)
    for a, b in zip(grads[1][1], grads[0][1], strict=True):  # float rounding differs, relative to each gradient's scale
        assert (a - b).abs().max() <= 1e-3 * a.abs().max() + 1e-7
