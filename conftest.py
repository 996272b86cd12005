"""Settings of every test session: the doctests' collection
(``--doctest-modules``), no network, and Ctrl-C as a terminal sends it."""

from __future__ import annotations

import importlib.util
import os
import signal

# skorchlite.dask needs the optional ``skorchlite[dask]`` extra; without it
# its doctests are not collected (tests/test_dask.py skips with the reason).
collect_ignore = [] if importlib.util.find_spec("distributed") else ["skorchlite/dask.py"]

# No test or doctest touches the network: weights missing from the caches
# are an error, never a download (tests/test_weights_download.py lifts this
# for a server of its own on 127.0.0.1). Subprocesses inherit it.
os.environ["SKORCHLITE_OFFLINE"] = "1"
os.environ.pop("SKORCHLITE_WEIGHTS_MIRROR", None)

# A run started in the background of a non-interactive shell (``cmd &``,
# nohup) inherits SIGINT ignored, and so would every program a test starts:
# the tests of Ctrl-C would then send it to nobody. Python raises
# KeyboardInterrupt on SIGINT wherever it is not ignored at start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
