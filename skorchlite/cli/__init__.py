"""The ``skorchlite`` command line (also ``python -m skorchlite``).

Verbs: ``evaluate`` (the main job), ``compare``, ``embed``, ``finetune``, ``predict``,
``explain``, ``backbones``, ``cache``. Errors print one line and exit with status 1 (``--debug``
shows the traceback); Ctrl-C exits with 130. ``--debug`` and ``--verbose`` go
before or after the verb; ``--version`` prints the version. Every output path is checked
before any work, and only the paths the user names are written, each
atomically and only once the work is done.
"""

from __future__ import annotations

from .backbones import RANDOM_INIT_LABEL
from .embed import EMBED_FORMATS
from .evaluate import HEADS
from .finetune import MODEL_SUFFIXES, SHARED_SUFFIX, WEIGHTS_SUFFIX
from .output import CommandError
from .program import LAYER_HELP, WEIGHTS_HELP, build_parser, main, run

__all__ = [
    "EMBED_FORMATS",
    "HEADS",
    "LAYER_HELP",
    "MODEL_SUFFIXES",
    "RANDOM_INIT_LABEL",
    "SHARED_SUFFIX",
    "WEIGHTS_HELP",
    "WEIGHTS_SUFFIX",
    "CommandError",
    "build_parser",
    "main",
    "run",
]
