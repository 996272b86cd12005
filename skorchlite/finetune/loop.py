"""The epoch loop of fine-tuning: phases, validation, best weights, early
stopping, non-finite values and Ctrl-C, run from a frozen configuration."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..engine import autocast
from ..memory import freed_memory_kept
from ..progress import progress_bar
from .inputs import NetworkInputs
from .parameters import FineTuneParameters
from .steps import (
    correct_predictions,
    fold_frozen_batchnorm,
    make_optimizer,
    make_schedule,
    set_trainable,
    weighted_loss,
)

__all__ = ["Phase", "Trainer", "TrainingConfig", "TrainingResult", "fine_tune_phases"]


@dataclass(frozen=True)
class Phase:
    """One stage of training: which groups learn, for how many epochs, at what rate.

    Parameters
    ----------
    name : str
        What ``history`` records as the epochs' phase: ``"head"`` or ``"fine-tune"``.
    n_unfrozen : int
        Layer groups of the body that train, counted from the output.
    epochs : int
    lr : float
        Peak learning rate of the head.
    """

    name: str
    n_unfrozen: int
    epochs: int
    lr: float


def fine_tune_phases(n_unfrozen: int, epochs: int, *, freeze_epochs: int, lr: float) -> tuple[Phase, ...]:
    """fastai's ``fine_tune``: the head alone for ``freeze_epochs`` at ``lr``,
    then ``n_unfrozen`` groups with it for ``epochs`` at ``lr / 2``.

    Without a head phase (``freeze_epochs=0`` or ``n_unfrozen=0``) one phase
    trains at ``lr``.

    Parameters
    ----------
    n_unfrozen : int
    epochs : int
    freeze_epochs : int
    lr : float

    Returns
    -------
    tuple of Phase

    Examples
    --------
    >>> [(p.name, p.n_unfrozen, p.epochs, p.lr) for p in fine_tune_phases(2, 10, freeze_epochs=1, lr=1e-3)]
    [('head', 0, 1, 0.001), ('fine-tune', 2, 10, 0.0005)]
    >>> fine_tune_phases(0, 3, freeze_epochs=1, lr=1e-3)
    (Phase(name='head', n_unfrozen=0, epochs=3, lr=0.001),)
    """
    if not (n_unfrozen and freeze_epochs):
        return (Phase("fine-tune" if n_unfrozen else "head", n_unfrozen, epochs, lr),)
    return Phase("head", 0, freeze_epochs, lr), Phase("fine-tune", n_unfrozen, epochs, lr / 2)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Everything the epoch loop reads, fixed for one run.

    Parameters
    ----------
    phases : tuple of Phase
        Which groups learn, for how many epochs, at what rate: the loop
        reads the epochs and peak rates here, not in ``params``.
    layer_groups : tuple of tuples of str
        Module names of the body from input to output, the units that a
        phase's ``n_unfrozen`` counts (the fitted network's, never the
        parameter).
    params : FineTuneParameters
        The estimator's parameters, of which the loop reads ``batch_size``,
        ``optimizer``, ``lr_decay``, ``weight_decay``, ``momentum``,
        ``schedule``, ``warmup``, ``batchnorm``, ``label_smoothing``,
        ``n_iter_no_change``, ``precision``, ``compile`` and ``verbose``.
    """

    phases: tuple[Phase, ...]
    layer_groups: tuple[tuple[str, ...], ...]
    params: FineTuneParameters


@dataclass(frozen=True)
class TrainingResult:
    """What a run of the loop did.

    Parameters
    ----------
    history : tuple of dict
        One record per epoch completed: epoch, phase, train_loss,
        valid_loss, valid_accuracy, lr, seconds.
    best_epoch : int or None
        The epoch whose weights the model holds (by validation loss, else the
        last); ``None`` when no epoch completed and the model holds the
        weights it started from.
    interrupted : bool
        Ctrl-C ended training after the last epoch of ``history``.
    """

    history: tuple[dict[str, Any], ...]
    best_epoch: int | None
    interrupted: bool


class Trainer:
    """The epoch loop of one fit, on ``model`` in place.

    Whatever stops training early (an exception, Ctrl-C) leaves the model
    with the best weights of the epochs this run completed; when it
    completed none, with the weights it started from. Ctrl-C after an
    epoch ends the run normally (``result.interrupted``); before, it is
    raised again. After :meth:`run` raised, :attr:`result` still tells
    which epochs completed.

    Parameters
    ----------
    model : torch.nn.Sequential
        ``model[0]`` the body, ``model[1]`` the head; moved to ``device``,
        channels-last.
    inputs : NetworkInputs
        With the rows' ``target`` and ``weight``.
    train, valid : ndarray of int
        Training and validation rows of ``inputs``; ``valid`` may be empty.
    config : TrainingConfig
    device : torch.device
    first_epoch : int, default=1
        Number of the first epoch, to continue an earlier run's history.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from skorchlite.backbones import Preprocessing
    >>> from skorchlite.finetune import FineTuneClassifier
    >>> from skorchlite.images import check_images
    >>> pre = Preprocessing(crop_size=16, resize_size=16, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    >>> images = check_images(np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
    >>> inputs = NetworkInputs(
    ...     images, pre, batch_size=4, device=torch.device("cpu"), workers=1, target=[0, 1] * 4, weight=[1.0] * 8
    ... )
    >>> body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> config = TrainingConfig(
    ...     phases=fine_tune_phases(1, 2, freeze_epochs=1, lr=1e-2),
    ...     layer_groups=(("0",),),
    ...     params=FineTuneParameters.of(FineTuneClassifier(batch_size=4)),
    ... )
    >>> model = nn.Sequential(body, nn.Linear(4, 2))
    >>> trainer = Trainer(
    ...     model, inputs, train=np.arange(6), valid=np.arange(6, 8), config=config, device=torch.device("cpu")
    ... )
    >>> result = trainer.run()
    >>> [h["phase"] for h in result.history]
    ['head', 'fine-tune', 'fine-tune']
    >>> result.best_epoch == min(result.history, key=lambda h: h["valid_loss"])["epoch"]
    True
    """

    def __init__(
        self,
        model: nn.Sequential,
        inputs: NetworkInputs,
        *,
        train: np.ndarray,
        valid: np.ndarray,
        config: TrainingConfig,
        device: torch.device,
        first_epoch: int = 1,
    ):
        # torch's Module.to overloads omit a device with memory_format, which it takes.
        self.model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.inputs, self.train, self.valid, self.config, self.device = inputs, train, valid, config, device
        self.first_epoch = first_epoch
        self.generator = torch.Generator().manual_seed(
            int(torch.randint(0, 2**62, (1,)).item())
        )  # drawn from the (seeded) global stream, so random_state fixes shuffling too
        assert inputs.weight is not None  # for mypy: training inputs carry weights
        # The validation loss is the weighted mean over the whole validation set
        # (a multi-label row weighs the mean of its labels' weights, as its loss averages them).
        weight = inputs.weight[torch.as_tensor(valid)]
        self.valid_weight = float((weight.mean(1) if weight.ndim == 2 else weight).sum())
        self._history: list[dict[str, Any]] = []
        self._interrupted = False
        self._best_loss = np.inf
        self._best_epoch = 0
        self._best_state: dict[str, torch.Tensor] | None = None
        self._good_state = self._snapshot()
        self._good_epoch: int | None = None  # the epoch _good_state holds; None: the starting weights
        self._stale = 0
        self._network: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def result(self) -> TrainingResult:
        """The epochs completed so far, and the one whose weights the model
        holds once :meth:`run` returned or raised."""
        best = self._best_epoch if self._best_state is not None else self._good_epoch
        return TrainingResult(tuple(self._history), best, self._interrupted)

    def run(self) -> TrainingResult:
        """Train every phase of the configuration, or until early stopping.

        Returns
        -------
        TrainingResult

        Raises
        ------
        FloatingPointError
            When a loss, gradient, weight or output becomes infinite or NaN,
            naming the epoch and the learning rate.
        KeyboardInterrupt
            On Ctrl-C before the first epoch completed.
        """
        try:
            with freed_memory_kept():  # across epochs: one setting for the whole fit
                for phase in self.config.phases:
                    if self._run_phase(phase):
                        break
        except KeyboardInterrupt:
            if not self._history:
                raise
            self._interrupted = True
        finally:
            self._restore()
        return self.result

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _restore(self) -> None:
        """Hold the best epoch's weights (by validation loss), else the last good ones."""
        self.model.load_state_dict(self._best_state if self._best_state is not None else self._good_state)

    def _diverged(self, what: str, epoch: int, lr: float) -> FloatingPointError:
        return FloatingPointError(f"The {what} in epoch {epoch} at learning rate {lr:.3g}")

    def _run_phase(self, phase: Phase) -> bool:
        """Train one phase; True when early stopping ends the whole run."""
        config, body, head = self.config, self.model[0], self.model[1]
        in_eval = set_trainable(body, config.layer_groups, phase.n_unfrozen, batchnorm=config.params.batchnorm)
        optimizer = make_optimizer(
            head,
            body,
            config.layer_groups,
            phase.n_unfrozen,
            name=config.params.optimizer,
            lr=phase.lr,
            lr_decay=config.params.lr_decay,
            weight_decay=config.params.weight_decay,
            momentum=config.params.momentum,
        )
        steps = -(-len(self.train) // config.params.batch_size)
        schedule = make_schedule(optimizer, config.params.schedule, steps * phase.epochs, config.params.warmup)
        for _ in range(phase.epochs):
            epoch = self.first_epoch + len(self._history)
            start = time.perf_counter()
            train_loss, lr = self._train_epoch(epoch, optimizer, schedule, in_eval, phase.n_unfrozen)
            # The last step's weights meet no loss of this epoch: check them here.
            if not _all_finite(t for t in self.model.state_dict().values() if t.is_floating_point()):
                raise self._diverged("weights became non-finite (inf or NaN)", epoch, lr)
            record: dict[str, Any] = {"epoch": epoch, "phase": phase.name, "train_loss": train_loss}
            record.update(self._validate())
            if len(self.valid) and not math.isfinite(record["valid_loss"]):
                raise self._diverged(f"validation loss became {record['valid_loss']}", epoch, lr)
            if not len(self.valid) and not self._outputs_finite():
                raise self._diverged("network's outputs became non-finite (finite weights too large)", epoch, lr)
            record["lr"] = lr
            record["seconds"] = time.perf_counter() - start
            self._history.append(record)
            self._good_state, self._good_epoch = self._snapshot(), epoch
            if config.params.verbose:
                print(_format_epoch(record), flush=True)
            if len(self.valid):
                if record["valid_loss"] < self._best_loss:
                    self._best_loss, self._best_state, self._stale = record["valid_loss"], self._good_state, 0
                    self._best_epoch = epoch
                else:
                    self._stale += 1
                    if config.params.n_iter_no_change is not None and self._stale >= config.params.n_iter_no_change:
                        if config.params.verbose:
                            print(f"Early stopping: no better validation loss for {self._stale} epochs.")
                        return True
        return False

    def _training_network(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The network of the training steps, built once per run: the model
        with frozen-statistics BatchNorm folded into its convolutions
        (sharing its parameters), compiled when asked."""
        if self._network is None:
            self._network = fold_frozen_batchnorm(self.model)
            if self.config.params.compile:
                self._network = torch.compile(self._network)
        return self._network

    def _train_epoch(
        self, epoch: int, optimizer: Any, schedule: Any, in_eval: list[nn.Module], n_unfrozen: int
    ) -> tuple[float, float]:
        """One pass over the training rows: (mean loss, head lr of the last step)."""
        config, inputs = self.config, self.inputs
        assert inputs.target is not None and inputs.weight is not None  # for mypy: training inputs carry both
        self.model.train()
        for module in in_eval:
            module.eval()  # frozen (and, by default, every) BatchNorm keeps its running statistics
        order = self.train[torch.randperm(len(self.train), generator=self.generator).numpy()]
        # One seed per image, drawn in order: augmentation in any number of threads repeats.
        seeds = torch.randint(0, 2**62, (len(order),), generator=self.generator).tolist()
        head = self.model[1]
        forward: Callable[[torch.Tensor], torch.Tensor]
        if inputs.embedding_mode:
            forward = head
        elif n_unfrozen == 0:
            body = self.model[0]

            def forward(x: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():  # a frozen body needs no graph
                    features = body(x)
                return head(features)
        else:
            forward = self._training_network()
        total, count, last_lr = 0.0, 0, 0.0
        # A bar only where an epoch is long enough to wait for.
        progress = progress_bar(len(order), config.params.verbose, f"epoch {epoch}", min_total=256)
        try:
            for rows, batch in inputs.training_batches(order, seeds):
                target = inputs.target[rows].to(self.device)
                weight = inputs.weight[rows].to(self.device)
                with autocast(self.device, config.params.precision):
                    # Divided by the rows, not the batch's weight sum: see weighted_loss.
                    loss = weighted_loss(forward(batch), target, weight, config.params.label_smoothing) / len(rows)
                if not torch.isfinite(loss):
                    raise self._diverged(f"training loss became {loss.item()}", epoch, optimizer.param_groups[0]["lr"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._step(optimizer, epoch)
                last_lr = optimizer.param_groups[0]["lr"]
                schedule.step()
                total += loss.item() * len(rows)
                count += len(rows)
                progress.update(len(rows))
        finally:
            progress.close()
        return total / count, last_lr

    def _step(self, optimizer: Any, epoch: int) -> None:
        lr = optimizer.param_groups[0]["lr"]
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not _all_finite(p.grad for p in params):
            raise self._diverged("gradients became non-finite (inf or NaN)", epoch, lr)
        try:
            optimizer.step()
        except RuntimeError as err:
            # torch's float32 optimisers refuse a step size beyond float32's range.
            if "overflow" not in str(err):
                raise
            raise self._diverged(f"optimizer step overflowed ({err})", epoch, lr) from err

    def _outputs_finite(self) -> bool:
        """Whether the weights now held give finite logits on one training
        batch: without validation, nothing else evaluates the last step's."""
        self.model.eval()
        with torch.inference_mode():
            return all(
                bool(logits.isfinite().all())
                for _, logits in self.inputs.logits(self.model, self.train[: self.config.params.batch_size])
            )

    def _validate(self) -> dict[str, float]:
        if not len(self.valid):
            return {"valid_loss": float("nan"), "valid_accuracy": float("nan")}
        self.model.eval()
        inputs, config = self.inputs, self.config
        assert inputs.target is not None and inputs.weight is not None  # for mypy: training inputs carry both
        loss, correct = 0.0, 0
        with torch.inference_mode(), autocast(self.device, config.params.precision):
            for rows, logits in inputs.logits(self.model, self.valid):
                target = inputs.target[rows].to(self.device)
                weight = inputs.weight[rows].to(self.device)
                loss += weighted_loss(logits.float(), target, weight, config.params.label_smoothing).item()
                correct += correct_predictions(logits, target)
        return {"valid_loss": loss / self.valid_weight, "valid_accuracy": correct / len(self.valid)}


def _format_epoch(record: dict[str, Any]) -> str:
    """The line ``verbose`` prints for an epoch."""
    return (
        f"epoch {record['epoch']:3d} {record['phase']:>9}  train_loss {record['train_loss']:.4f}  "
        f"valid_loss {record['valid_loss']:.4f}  valid_acc {record['valid_accuracy']:.3f}  "
        f"lr {record['lr']:.2e}  {record['seconds']:.1f}s"
    )


def _all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    flags = [t.isfinite().all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True  # one device sync, not one per tensor
