"""Every timm model as ``"timm/<model name>"``, weights from the local
Hugging Face cache, downloaded there on first use."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import math
from pathlib import Path
from typing import Any

from torch import nn

from ..persistence import error_cause
from .backbone import IMAGENET_PREPROCESSING, BackboneUnavailableError, Preprocessing
from .download import offline_setting
from .layers import top_level_groups
from .source import BackboneSource

#: The weights files of a timm model's Hugging Face repository, in order of preference.
_FILES = ("model.safetensors", "pytorch_model.bin")


class TimmSource(BackboneSource):
    """Every timm model as ``"timm/<model name>"`` (optional extra
    ``skorchlite[timm]``), weights from the local Hugging Face cache
    (``$HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``), downloaded
    there on first use."""

    title = "timm (weights in the Hugging Face cache, downloaded on first use; pip install 'skorchlite[timm]')"
    prefix = "timm/"

    @staticmethod
    def _timm() -> Any:
        try:
            return importlib.import_module("timm")
        except ImportError as err:
            raise ImportError("timm backbones need timm: pip install 'skorchlite[timm]'.") from err

    def names(self) -> list[str]:
        if importlib.util.find_spec("timm") is None:
            return []
        return [self.prefix + n for n in self._timm().list_models(pretrained=True)]

    def offers(self, name: str) -> bool:
        # Any timm architecture, with or without a pretrained tag; without
        # timm every "timm/" name is offered, so that using one says to install it.
        if not name.startswith(self.prefix):
            return False
        return importlib.util.find_spec("timm") is None or self._timm().is_model(name[len(self.prefix) :])

    def _cfg(self, name: str) -> Any:
        model_name = name[len(self.prefix) :]
        cfg = self._timm().models.get_pretrained_cfg(model_name)
        if cfg is None:
            raise BackboneUnavailableError(
                f"timm has no pretrained weights for {model_name!r}; use weights=None or a file."
            )
        return cfg

    def _repo(self, name: str, weights: str) -> str:
        self._timm()
        if weights != "DEFAULT":
            raise ValueError(
                f"Backbone {name!r} takes weights 'DEFAULT' (name the tag in the backbone: 'timm/<model>.<tag>'), "
                f"None or a file path; got {weights!r}."
            )
        repo = self._cfg(name).hf_hub_id
        if not repo:
            raise BackboneUnavailableError(f"timm's weights of {name!r} are not on the Hugging Face Hub; use a file.")
        return str(repo)

    def weights_file(self, name: str, weights: str) -> tuple[str, Path]:
        repo = self._repo(name, weights)
        from huggingface_hub import constants, try_to_load_from_cache

        for filename in _FILES:
            found = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE)
            if isinstance(found, str):
                return f"{name}@hf:{repo}/{filename}", Path(found)
        raise BackboneUnavailableError(
            f"Weights of backbone {name!r} are not in the local Hugging Face cache ({constants.HF_HUB_CACHE}). "
            f"On a machine with internet: huggingface-cli download {repo} model.safetensors, then copy the cache "
            f"folder models--{repo.replace('/', '--')} there (or set HF_HUB_CACHE); or pass the file itself as "
            f"backbone=({name!r}, 'path/to/model.safetensors')."
        )

    def fetch_weights(self, name: str, weights: str) -> tuple[str, Path]:
        """From the local Hugging Face cache, downloaded there by
        huggingface_hub (which checks and places the file, and follows
        ``HF_ENDPOINT``) unless ``SKORCHLITE_OFFLINE`` or ``HF_HUB_OFFLINE`` is set."""
        try:
            return self.weights_file(name, weights)
        except BackboneUnavailableError as err:
            if (setting := offline_setting("HF_HUB_OFFLINE")) is not None:
                raise BackboneUnavailableError(f"{err} ({setting} forbids downloading them.)") from None
        repo = self._repo(name, weights)
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub.utils import EntryNotFoundError  # also in 0.20, before huggingface_hub.errors

        for filename in _FILES:
            try:
                huggingface_hub.hf_hub_download(repo, filename, cache_dir=constants.HF_HUB_CACHE)
            except EntryNotFoundError:  # a repository of .bin weights only: the next name
                continue
            except Exception as err:  # noqa: BLE001 - huggingface_hub's many network errors: one line
                raise BackboneUnavailableError(
                    f"Weights of backbone {name!r}: downloading {filename} of {repo} from the Hugging Face Hub "
                    f"failed ({error_cause(err)})."
                ) from None
            return self.weights_file(name, weights)
        raise BackboneUnavailableError(f"The Hugging Face repository {repo} has none of {', '.join(_FILES)}.")

    def architecture(self, name: str) -> nn.Module:
        return self._timm().create_model(name[len(self.prefix) :], pretrained=False)

    def preprocessing(self, name: str, weights: str = "DEFAULT") -> Preprocessing:
        """From the model's ``pretrained_cfg``, as timm's own eval transform."""
        found = self._timm().models.get_pretrained_cfg(name[len(self.prefix) :])
        cfg = found.to_dict() if found is not None else {}
        size = int(cfg.get("input_size", (3, 224, 224))[-1])
        return Preprocessing(
            crop_size=size,
            resize_size=math.floor(size / cfg.get("crop_pct", 0.875)),
            interpolation=cfg.get("interpolation", "bilinear"),
            mean=tuple(cfg.get("mean", IMAGENET_PREPROCESSING.mean)),
            std=tuple(cfg.get("std", IMAGENET_PREPROCESSING.std)),
        )

    def split_head(self, name: str, model: nn.Module) -> tuple[nn.Module, nn.Module, int]:
        # timm's own way to drop the classifier: forward() is then
        # forward_head(forward_features(x), pre_logits=True), pooled features.
        timm_model: Any = model  # timm's models have these; nn.Module declares none of them
        classifier = copy.deepcopy(timm_model.get_classifier())
        timm_model.reset_classifier(0)
        return (
            model,
            classifier,
            int(timm_model.num_features if not hasattr(model, "head_hidden_size") else timm_model.head_hidden_size),
        )

    def layer_groups(self, name: str, model: nn.Module) -> list[tuple[str, ...]]:
        return top_level_groups(model)
