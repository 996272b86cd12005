"""The epoch loop on its own: a frozen config in, a result out, the model left
with the best complete epoch's weights whatever stops it."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from torch import nn

import skorchlite.finetune.loop
from skorchlite import FineTuneClassifier
from skorchlite.backbones import Preprocessing
from skorchlite.finetune.inputs import NetworkInputs
from skorchlite.finetune.loop import Trainer, TrainingConfig, fine_tune_phases
from skorchlite.finetune.parameters import FineTuneParameters
from skorchlite.images import check_images

CPU = torch.device("cpu")
PRE = Preprocessing(crop_size=16, resize_size=16, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
IMAGES = check_images(np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
VALID, NO_VALID = np.arange(6, 8), np.arange(0)  # rows 6 and 7 held out, or none


def _config(phases=None, **changes):
    params = FineTuneParameters.of(FineTuneClassifier(batch_size=4, schedule="onecycle", batchnorm="eval"))
    return TrainingConfig(
        phases=phases or fine_tune_phases(1, 2, freeze_epochs=1, lr=1e-2),
        layer_groups=(("0",),),
        params=dataclasses.replace(params, **changes),
    )


def _trainer(valid=VALID, first_epoch=1, **changes):
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    batch_size = changes.get("batch_size", 4)
    inputs = NetworkInputs(
        IMAGES, PRE, batch_size=batch_size, device=CPU, workers=1, target=[0, 1] * 4, weight=[1.0] * 8
    )
    train = np.setdiff1d(np.arange(8), valid)
    model = nn.Sequential(body, nn.Linear(4, 2))
    return Trainer(
        model, inputs, train=train, valid=valid, config=_config(**changes), device=CPU, first_epoch=first_epoch
    )


def _failing_loss_at(call, failure):
    real, calls = skorchlite.finetune.loop.weighted_loss, []

    def loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            if failure == "nan":
                return real(*args, **kwargs) * float("nan")
            raise failure
        return real(*args, **kwargs)

    return loss


def test_the_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _config().params.batch_size = 8


def test_a_run_returns_its_epochs_and_holds_the_best_ones_weights():
    trainer = _trainer(first_epoch=5)  # continuing an earlier run's history
    result = trainer.run()
    assert [h["epoch"] for h in result.history] == [5, 6, 7]
    assert [h["phase"] for h in result.history] == ["head", "fine-tune", "fine-tune"]
    assert result.best_epoch == min(result.history, key=lambda h: h["valid_loss"])["epoch"]
    assert not result.interrupted
    assert trainer.result == result


def test_without_validation_the_model_holds_the_last_epoch():
    result = _trainer(valid=NO_VALID).run()
    assert result.best_epoch == 3 and all(np.isnan(h["valid_loss"]) for h in result.history)
    assert all(np.isnan(h["valid_accuracy"]) for h in result.history)


def test_early_stopping_ends_the_run_and_keeps_the_best_epoch(monkeypatch):
    trainer = _trainer(n_iter_no_change=2, phases=fine_tune_phases(1, 5, freeze_epochs=0, lr=1e-2))
    losses = iter([1.0, 0.5, 0.7, 0.6, 0.1])
    monkeypatch.setattr(trainer, "_validate", lambda: {"valid_loss": next(losses), "valid_accuracy": 0.5})
    result = trainer.run()
    assert [h["valid_loss"] for h in result.history] == [1.0, 0.5, 0.7, 0.6]
    assert result.best_epoch == 2


def test_the_model_ends_with_the_best_epochs_weights_not_the_last_ones(monkeypatch):
    trainer = _trainer(phases=fine_tune_phases(1, 4, freeze_epochs=0, lr=1e-2))
    losses, weights = iter([0.9, 0.3, 0.6, 0.8]), []

    def validate():
        weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})  # each epoch's, as validated
        return {"valid_loss": next(losses), "valid_accuracy": 0.5}

    monkeypatch.setattr(trainer, "_validate", validate)
    assert trainer.run().best_epoch == 2
    final = trainer.model.state_dict()
    assert all(torch.equal(final[key], value) for key, value in weights[1].items())
    assert not all(torch.equal(final[key], value) for key, value in weights[-1].items())  # training moved them


def test_a_non_finite_loss_leaves_the_weights_of_the_last_complete_epoch(monkeypatch):
    head_phase = fine_tune_phases(1, 2, freeze_epochs=1, lr=1e-2)[:1]
    epoch_1 = _trainer(valid=NO_VALID, phases=head_phase)
    epoch_1.run()
    trainer = _trainer(valid=NO_VALID)
    monkeypatch.setattr(skorchlite.finetune.loop, "weighted_loss", _failing_loss_at(3, "nan"))  # epoch 2's first batch
    with pytest.raises(FloatingPointError, match=r"training loss became nan in epoch 2 at learning rate"):
        trainer.run()
    assert len(trainer.result.history) == 1 and trainer.result.best_epoch == 1
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, epoch_1.model.state_dict()[key]), key


def test_ctrl_c_before_the_first_epoch_ends_is_raised_and_leaves_the_starting_weights(monkeypatch):
    trainer = _trainer()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    monkeypatch.setattr(skorchlite.finetune.loop, "weighted_loss", _failing_loss_at(1, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert trainer.result.history == () and trainer.result.best_epoch is None
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_ctrl_c_after_an_epoch_ends_the_run_normally(monkeypatch):
    # Two training batches and one validation batch an epoch: call 4 is in epoch 2.
    monkeypatch.setattr(skorchlite.finetune.loop, "weighted_loss", _failing_loss_at(4, KeyboardInterrupt()))
    try:
        result = _trainer().run()
    except KeyboardInterrupt:  # a failure, not an interrupted test session
        pytest.fail("Ctrl-C after a complete epoch was raised, not turned into an interrupted run")
    assert result.interrupted and len(result.history) == 1 and result.best_epoch == 1


@pytest.mark.parametrize("n_unfrozen", [0, 1, 3])
@pytest.mark.parametrize("freeze_epochs", [0, 2])
def test_phases_are_fastais_fine_tune(n_unfrozen, freeze_epochs):
    phases = fine_tune_phases(n_unfrozen, 5, freeze_epochs=freeze_epochs, lr=0.04)
    got = [(p.name, p.n_unfrozen, p.epochs, p.lr) for p in phases]
    if n_unfrozen and freeze_epochs:  # the head alone at lr, then the groups with it at lr / 2
        assert got == [("head", 0, freeze_epochs, 0.04), ("fine-tune", n_unfrozen, 5, 0.02)]
    else:
        assert got == [("fine-tune" if n_unfrozen else "head", n_unfrozen, 5, 0.04)]


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_validation_loss_is_the_weighted_mean_cross_entropy_and_accuracy_the_share_right(label_smoothing):
    torch.manual_seed(1)
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    target, weight = [0, 1, 1, 0, 1, 0, 0, 1], [1.0, 2.0, 0.5, 1.0, 3.0, 0.25, 1.0, 2.0]
    inputs = NetworkInputs(IMAGES, PRE, batch_size=3, device=CPU, workers=1, target=target, weight=weight)
    model = nn.Sequential(body, nn.Linear(4, 2))
    valid = np.array([7, 2, 4, 5, 0])  # two batches of 3
    trainer = Trainer(
        model,
        inputs,
        train=np.array([1, 3, 6]),
        valid=valid,
        config=_config(label_smoothing=label_smoothing),
        device=CPU,
    )
    # By hand, from the images' preprocessed pixels, in one batch.
    model.eval()
    with torch.no_grad():
        pixels = torch.cat([batch for _, batch in inputs.training_batches(valid)])
        logits = model(pixels)
    t, w = torch.tensor(target)[valid], torch.tensor(weight)[valid]
    losses = torch.nn.functional.cross_entropy(logits, t, reduction="none", label_smoothing=label_smoothing)
    got = trainer._validate()
    assert got["valid_loss"] == pytest.approx(float((w * losses).sum() / w.sum()), rel=1e-5)
    assert got["valid_accuracy"] == pytest.approx(float((logits.argmax(1) == t).float().mean()))


def _params_of(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_the_head_phase_leaves_the_body_and_the_fine_tune_phase_trains_it():
    trainer = _trainer(valid=NO_VALID, phases=fine_tune_phases(1, 2, freeze_epochs=1, lr=1e-2)[:1])
    body, head = _params_of(trainer.model[0]), _params_of(trainer.model[1])
    trainer.run()
    assert all(torch.equal(v, body[k]) for k, v in trainer.model[0].state_dict().items())
    assert not all(torch.equal(v, head[k]) for k, v in trainer.model[1].state_dict().items())
    trainer = _trainer(valid=NO_VALID, phases=fine_tune_phases(1, 1, freeze_epochs=0, lr=1e-2))
    body = _params_of(trainer.model[0])
    trainer.run()
    assert not all(torch.equal(v, body[k]) for k, v in trainer.model[0].state_dict().items())


def test_each_epochs_record_and_verbose_line(capsys):
    start = time.perf_counter()
    trainer = _trainer(verbose=1)
    result = trainer.run()
    elapsed = time.perf_counter() - start
    lines = capsys.readouterr().out.splitlines()
    assert lines == [skorchlite.finetune.loop._format_epoch(h) for h in result.history]
    for h in result.history:
        assert set(h) == {"epoch", "phase", "train_loss", "valid_loss", "valid_accuracy", "lr", "seconds"}
        assert np.isfinite(h["train_loss"]) and h["train_loss"] > 0
        assert 0 < h["seconds"] < elapsed and 0 < h["lr"] <= 1e-2


def test_early_stopping_in_the_head_phase_skips_the_fine_tune_phase(monkeypatch, capsys):
    trainer = _trainer(n_iter_no_change=1, verbose=1, phases=fine_tune_phases(1, 3, freeze_epochs=3, lr=1e-2))
    losses = iter([0.5, 0.5, 0.1, 0.1, 0.1, 0.1])  # equal is no better: epoch 1 stays the best
    monkeypatch.setattr(trainer, "_validate", lambda: {"valid_loss": next(losses), "valid_accuracy": 0.5})
    result = trainer.run()
    assert [h["phase"] for h in result.history] == ["head", "head"] and result.best_epoch == 1
    assert capsys.readouterr().out.splitlines()[-1] == "Early stopping: no better validation loss for 1 epochs."


@pytest.mark.parametrize(
    ("what", "valid", "message"),
    [
        ("weights", NO_VALID, r"weights became non-finite \(inf or NaN\)"),
        ("validation", VALID, "validation loss became nan"),
        ("outputs", NO_VALID, r"network's outputs became non-finite \(finite weights too large\)"),
    ],
)
def test_what_diverged_is_named_with_its_epoch_and_learning_rate(monkeypatch, what, valid, message):
    trainer = _trainer(valid=valid, phases=fine_tune_phases(1, 2, freeze_epochs=0, lr=1e-2))
    step, steps = trainer._step, []

    def poisoned_step(optimizer, epoch):  # epoch 2's last step leaves a weight infinite
        step(optimizer, epoch)
        steps.append(epoch)
        if steps.count(2) == -(-len(trainer.train) // 4) and what == "weights":
            with torch.no_grad():
                trainer.model[1].weight[0, 0] = float("inf")

    monkeypatch.setattr(trainer, "_step", poisoned_step)
    if what == "validation":
        validate = trainer._validate
        monkeypatch.setattr(trainer, "_validate", lambda: {**validate(), "valid_loss": float("nan")})
    if what == "outputs":
        monkeypatch.setattr(trainer, "_outputs_finite", lambda: False)
    epoch = 2 if what == "weights" else 1
    with pytest.raises(FloatingPointError, match=rf"^The {message} in epoch {epoch} at learning rate \d[\d.e-]*$"):
        trainer.run()


@pytest.mark.parametrize("batchnorm, moves", [("eval", False), ("train", True)])
def test_the_batchnorm_mode_decides_whether_unfrozen_running_statistics_move(batchnorm, moves):
    trainer = _trainer(valid=NO_VALID, batchnorm=batchnorm, phases=fine_tune_phases(1, 1, freeze_epochs=0, lr=1e-2))
    norm = nn.BatchNorm2d(4)
    trainer.model[0][0] = nn.Sequential(trainer.model[0][0], norm)  # in the unfrozen layer group "0"
    before = norm.running_mean.clone()
    trainer.run()
    assert torch.equal(norm.running_mean, before) is not moves


@pytest.mark.parametrize("optimizer, momentum", [("sgd", 0.0), ("sgd", 0.7), ("adamw", 0.9)])
@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_each_phase_builds_the_configured_optimiser_and_a_schedule_that_spans_it(
    monkeypatch, optimizer, momentum, schedule
):
    built = []
    make_schedule = skorchlite.finetune.loop.make_schedule

    def spy(opt, kind, total_steps, warmup):
        built.append((opt, total_steps, make_schedule(opt, kind, total_steps, warmup)))
        return built[-1][2]

    monkeypatch.setattr(skorchlite.finetune.loop, "make_schedule", spy)
    phases = fine_tune_phases(1, 3, freeze_epochs=2, lr=1e-2)
    changes = {"optimizer": optimizer, "momentum": momentum, "schedule": schedule, "warmup": 0.3, "batch_size": 3}
    _trainer(valid=NO_VALID, phases=phases, **changes).run()
    steps = 3  # eight training rows in batches of three, the last one short
    assert len(built) == len(phases)
    for (opt, total_steps, sched), phase in zip(built, phases, strict=True):
        if optimizer == "adamw":
            assert type(opt) is torch.optim.AdamW
        else:
            assert type(opt) is torch.optim.SGD
            assert all(g["momentum"] == momentum and g["nesterov"] == (momentum > 0) for g in opt.param_groups)
        # One scheduler step per batch, and the last one reaches the schedule's end.
        assert total_steps == sched.last_epoch == steps * phase.epochs
        head_lr = opt.param_groups[0]["lr"]
        end = phase.lr / 25 / 1e4 if schedule == "onecycle" else 0.0
        assert head_lr == pytest.approx(end, abs=1e-12)
