"""skorchlite.inspect, the package: its name does not shadow the standard
library's. Each of its modules is tested in tests/test_inspect_<module>.py
(the resolver of explainable.py in tests/test_inspect_model.py); what they share
is in tests/inspect_helpers.py and conftest.py (``patch_clf``)."""

from __future__ import annotations

import sys
from pathlib import Path


# ------------------------------------------------------------- the package name
def test_the_standard_library_inspect_is_not_shadowed():
    import inspect

    import skorchlite.inspect

    assert sys.modules["inspect"] is inspect and Path(inspect.__file__).name == "inspect.py"
    assert skorchlite.inspect.grad_cam.__module__ == "skorchlite.inspect.gradcam"
    assert inspect.signature(skorchlite.inspect.grad_cam).parameters["target"].default is None
