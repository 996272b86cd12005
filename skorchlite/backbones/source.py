"""What the registry needs to know of one family of backbones."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import cast

from torch import nn

from .backbone import Backbone, Preprocessing
from .layers import GROUPS, last_linear, set_submodule, top_level_groups
from .weights import load_checkpoint


class BackboneSource(ABC):
    """One family of backbones: what the registry needs to know of it.

    :func:`get_backbone` and its siblings ask the first source in
    :data:`SOURCES` that offers a name; a new family (timm, say) is one
    subclass added there. :meth:`weights_file` never downloads; a source
    that can fetch missing weights does so in :meth:`fetch_weights`.
    """

    #: What ``skorchlite backbones`` calls the source.
    title: str = ""

    @abstractmethod
    def names(self) -> list[str]:
        """Every name this source offers."""

    def offers(self, name: str) -> bool:
        return name in self.names()

    @abstractmethod
    def weights_file(self, name: str, weights: str) -> tuple[str, Path]:
        """The id and local file of named ``weights`` (``"DEFAULT"`` or a
        member name). Raises ValueError for an unknown member and
        BackboneUnavailableError when the file is not on this machine."""

    def fetch_weights(self, name: str, weights: str) -> tuple[str, Path]:
        """As :meth:`weights_file`, downloading the file first when it is not
        on this machine and the source knows where to get it (unless
        ``SKORCHLITE_OFFLINE`` forbids it); by default, never."""
        return self.weights_file(name, weights)

    def weights_location(self, name: str, weights: str) -> Path:
        """What a run reads the named ``weights`` from: their file, or a
        folder when any file added to it would change what is read."""
        return self.weights_file(name, weights)[1]

    @abstractmethod
    def architecture(self, name: str) -> nn.Module:
        """The network with its classifier, randomly initialised."""

    def pretrained(self, name: str, weights_id: str, path: Path) -> nn.Module:
        """The network with the weights of ``weights_id`` read from ``path``."""
        model = self.architecture(name)
        load_checkpoint(model, path, name)
        return model

    @abstractmethod
    def preprocessing(self, name: str, weights: str = "DEFAULT") -> Preprocessing:
        """The evaluation transform of the weights (of the default ones for
        a file or a random initialisation)."""

    def categories(self, name: str, weights_id: str) -> list[str] | None:
        """Names of the pretrained classifier's outputs, when known."""
        return None

    def min_image_size(self, name: str, weights: str = "DEFAULT") -> int:
        return 1

    def head_name(self, name: str, model: nn.Module) -> str:
        """The classifier's module name: the last ``nn.Linear`` unless the
        architecture is known to differ."""
        return _HEADS.get(name) or last_linear(model)

    def split_head(self, name: str, model: nn.Module) -> tuple[nn.Module, nn.Module, int]:
        """Remove the classifier: ``(headless model, classifier, embedding width)``."""
        head = self.head_name(name, model)
        classifier = model.get_submodule(head)
        set_submodule(model, head, nn.Identity())
        # An nn.Linear's width; nn.Module types its attributes as Tensor | Module.
        return model, classifier, cast(int, classifier.in_features)

    def layer_groups(self, name: str, model: nn.Module) -> list[tuple[str, ...]]:
        """Module names of the headless ``model`` from input to output."""
        return GROUPS[name](model) if name in GROUPS else top_level_groups(model)

    def feature_nodes(self, name: str, backbone: Backbone) -> dict[str, str]:
        """Layer shortcuts (``{"mid": node, ...}``) of a built backbone; none by default."""
        return {}


#: Classifier names where the last ``nn.Linear`` is not the classifier.
_HEADS: dict[str, str] = {}
