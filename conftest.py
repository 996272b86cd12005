"""Settings of every test session: the doctests' collection
(``--doctest-modules``), and no network."""

from __future__ import annotations

import importlib.util
import os

# skorchlite.dask needs the optional ``skorchlite[dask]`` extra; without it
# its doctests are not collected (tests/test_dask.py skips with the reason).
collect_ignore = [] if importlib.util.find_spec("distributed") else ["skorchlite/dask.py"]

# No test or doctest touches the network: weights missing from the caches
# are an error, never a download (tests/test_weights_download.py lifts this
# for a server of its own on 127.0.0.1). Subprocesses inherit it.
os.environ["SKORCHLITE_OFFLINE"] = "1"
os.environ.pop("SKORCHLITE_WEIGHTS_MIRROR", None)
