"""Collection settings for the doctests of the package (``--doctest-modules``)."""

from __future__ import annotations

import importlib.util

# skorchlite.dask needs the optional ``skorchlite[dask]`` extra; without it
# its doctests are not collected (tests/test_dask.py skips with the reason).
collect_ignore = [] if importlib.util.find_spec("distributed") else ["skorchlite/dask.py"]
