"""Every torchvision classification model, weights from torchvision's own
cache, downloaded there on first use."""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models import get_model_builder, get_model_weights, list_models

from ..persistence import error_cause
from .backbone import BackboneUnavailableError, Preprocessing
from .download import fetch_file
from .source import BackboneSource
from .weights import load_state_dict

_BUILD_LOCK = threading.Lock()


class TorchvisionSource(BackboneSource):
    """Every torchvision classification model, weights from torchvision's
    own cache (``$TORCH_HOME/hub/checkpoints``), downloaded there on first
    use from torchvision's URL (or ``SKORCHLITE_WEIGHTS_MIRROR``) unless
    ``SKORCHLITE_OFFLINE`` is set."""

    title = "torchvision (weights in $TORCH_HOME/hub/checkpoints, downloaded on first use)"
    # Heads that do not end in nn.Linear cannot be split into body + classifier.
    _no_linear_head = frozenset({"squeezenet1_0", "squeezenet1_1"})

    def names(self) -> list[str]:
        return _torchvision_names(self._no_linear_head)

    def member(self, name: str, weights: str) -> Any:
        enum = get_model_weights(name)
        member_name = weights.rsplit(".", 1)[-1]
        try:
            return enum[member_name] if member_name != "DEFAULT" else enum.DEFAULT
        except KeyError:
            raise ValueError(
                f"Backbone {name!r} has no weights {weights!r}; choose one of "
                f"{', '.join(['DEFAULT', *enum.__members__])}, None (random initialisation) or a path to a weights file."
            ) from None

    def checkpoint(self, name: str, weights: str) -> tuple[Any, Path]:
        """The weights member and the file torch's cache keeps it in
        (``torch.hub.get_dir()/checkpoints``, the URL's file name), there or not."""
        member = self.member(name, weights)
        return member, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(self.url(member))

    def url(self, member: Any) -> str:
        """Where torchvision publishes a weights member's file."""
        return str(member.url)

    def weights_file(self, name: str, weights: str) -> tuple[str, Path]:
        member, path = self.checkpoint(name, weights)
        if not path.is_file():
            raise BackboneUnavailableError(f"Weights {member!r} of backbone {name!r} are not in {str(path)!r}.")
        return repr(member), path

    def fetch_weights(self, name: str, weights: str) -> tuple[str, Path]:
        member, path = self.checkpoint(name, weights)
        what = f"Weights {member!r} of backbone {name!r}"
        fetch_file(self.url(member), path, what=what, hint="(TORCH_HOME moves torch's cache.)")
        return repr(member), path

    def weights_location(self, name: str, weights: str) -> Path:
        # Where they are, or where a first use downloads them: no output may go there either.
        return self.checkpoint(name, weights)[1]

    def architecture(self, name: str) -> nn.Module:
        return get_model_builder(name)(weights=None)

    def pretrained(self, name: str, weights_id: str, path: Path) -> nn.Module:
        """Built by torchvision's own builder, which sets the architecture
        arguments each weights member needs, but with the file read here."""
        member = self.member(name, weights_id)
        enum = type(member)
        with _BUILD_LOCK:
            # Builders fetch with weights.get_state_dict(), whose torch.load is
            # not weights_only: route it to our safe loader for this call only.
            enum.get_state_dict = lambda self, *a, **k: load_state_dict(path)
            try:
                return get_model_builder(name)(weights=member)
            except RuntimeError as err:  # load_state_dict's many lines on a file of other weights
                raise ValueError(f"Weights file {str(path)!r} does not fit {name}: {error_cause(err)}") from None
            finally:
                del enum.get_state_dict

    def preprocessing(self, name: str, weights: str = "DEFAULT") -> Preprocessing:
        return Preprocessing.from_transform(self.member(name, weights).transforms())

    def categories(self, name: str, weights_id: str) -> list[str] | None:
        return list(self.member(name, weights_id).meta["categories"])

    def min_image_size(self, name: str, weights: str = "DEFAULT") -> int:
        return max(self.member(name, weights).meta.get("min_size", (1, 1)))


@functools.cache
def _torchvision_names(excluded: frozenset[str]) -> list[str]:
    return [n for n in list_models(module=torchvision.models) if n not in excluded]
