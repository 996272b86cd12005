"""Every timm model as ``"timm/<model name>"``, weights from the local Hugging Face cache."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import math
from pathlib import Path
from typing import Any

from torch import nn

from .backbone import IMAGENET_PREPROCESSING, BackboneUnavailableError, Preprocessing
from .layers import top_level_groups
from .source import BackboneSource


class TimmSource(BackboneSource):
    """Every timm model as ``"timm/<model name>"`` (optional extra
    ``skorchlite[timm]``), weights only from the local Hugging Face cache
    (``$HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``)."""

    title = "timm (weights from the local Hugging Face cache; pip install 'skorchlite[timm]')"
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

    def weights_file(self, name: str, weights: str) -> tuple[str, Path]:
        self._timm()
        if weights != "DEFAULT":
            raise ValueError(
                f"Backbone {name!r} takes weights 'DEFAULT' (name the tag in the backbone: 'timm/<model>.<tag>'), "
                f"None or a file path; got {weights!r}."
            )
        cfg = self._cfg(name)
        repo = cfg.hf_hub_id
        if not repo:
            raise BackboneUnavailableError(f"timm's weights of {name!r} are not on the Hugging Face Hub; use a file.")
        from huggingface_hub import constants, try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE)
            if isinstance(found, str):
                return f"{name}@hf:{repo}/{filename}", Path(found)
        raise BackboneUnavailableError(
            f"Weights of backbone {name!r} are not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
            f"and skorchlite never downloads. On a machine with internet: huggingface-cli download {repo} "
            f"model.safetensors, then copy the cache folder models--{repo.replace('/', '--')} there (or set "
            f"HF_HUB_CACHE)."
        )

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
