"""Issue 24, class 2: the cache key of a module backbone covers whatever can
change its vectors (or the module is not cached, with a warning), and an
entry of another width is set aside and computed again, never an error."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from skorchlite import PretrainedFeatureExtractor
from skorchlite.backbones.identity import module_identity
from skorchlite.cache import CacheWarning, EmbeddingCache
from skorchlite.images import check_images, content_key

TINY = {"size": 16, "resize_size": 16, "mean": (0.5,) * 3, "std": (0.25,) * 3}
X = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)

# A notebook's cell: run again with an edit, it redefines the classes and
# functions under the same names, in the same globals.
CELL = """
import functools
import torch
from torch import nn

SCALE = 2.0

def helper(x):
    return x * SCALE

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)

class Net(nn.Module):
    kind = "plain"

    def __init__(self):
        super().__init__()
        self.block = Block()
        self.register_buffer("shift", torch.zeros(4), persistent=False)
        self.offset = torch.zeros(4)
        self.scale = 1.0
        self.mode = "relu"
        self.act = torch.relu
        self.extra = functools.partial(torch.add, alpha=1.0)

    def forward(self, x):
        y = self.act(helper(self.block(x)) * self.scale) + self.shift[:, None, None] + self.offset[:, None, None]
        y = self.extra(y, 1.0)
        if self.mode == "square":
            y = y * y
        if self.kind == "doubled":
            y = y * 2
        return y
"""


def run_cell(namespace: dict, edit: tuple[str, str] | None = None) -> dict:
    source = CELL if edit is None else CELL.replace(*edit)
    assert edit is None or source != CELL
    exec(compile(source, "<cell>", "exec"), namespace)
    return namespace


def fresh_net(namespace: dict) -> nn.Module:
    torch.manual_seed(0)
    return namespace["Net"]().eval()


def same_weights(net: nn.Module, like: nn.Module) -> nn.Module:
    net.load_state_dict(like.state_dict())
    return net


def embed(net: nn.Module, cache) -> np.ndarray:
    return PretrainedFeatureExtractor(net, preprocessing=TINY, cache=cache).fit_transform(X)


# Each edit changes the vectors but not the state dict: the old key would serve stale vectors.
CELL_EDITS = {
    "forward of the class": ("y = self.extra(y, 1.0)", "y = self.extra(y, 1.5)"),
    "forward of a submodule's class": ("return self.conv(x)", "return self.conv(x) - 1"),
    "a function forward calls": ("return x * SCALE", "return x * SCALE + 1"),
    "a global it reads": ("SCALE = 2.0", "SCALE = 3.0"),
}


def mutate(net: nn.Module, what: str) -> None:
    """Change ``net`` in place, leaving its state dict as it was."""
    if what == "plain float attribute":
        net.scale = 3.0
    elif what == "plain str attribute":
        net.mode = "square"
    elif what == "non-persistent buffer":
        net.shift.fill_(1.0)
    elif what == "tensor attribute":
        net.offset = torch.ones(4)
    elif what == "callable attribute":
        net.act = torch.tanh
    elif what == "partial attribute":
        net.extra = functools.partial(torch.add, alpha=5.0)
    elif what == "forward replaced on the instance":
        net.forward = types.MethodType(lambda self, x: type(self).forward(self, x) + 1, net)
    elif what == "class attribute":
        type(net).kind = "doubled"
    else:
        raise AssertionError(what)


MUTATIONS = [
    "plain float attribute",
    "plain str attribute",
    "non-persistent buffer",
    "tensor attribute",
    "callable attribute",
    "partial attribute",
    "forward replaced on the instance",
    "class attribute",
]


@pytest.mark.parametrize("edit", CELL_EDITS, ids=list(CELL_EDITS))
def test_a_notebook_cell_run_again_with_an_edit_never_meets_its_old_vectors(tmp_path, edit):
    cache = tmp_path / "cache"
    namespace = run_cell({"__name__": "notebook"})
    old = fresh_net(namespace)
    before = embed(old, cache)
    run_cell(namespace, CELL_EDITS[edit])
    new = same_weights(fresh_net(namespace), old)
    expected = embed(new, False)
    assert not np.allclose(expected, before)  # the edit matters
    np.testing.assert_allclose(embed(new, cache), expected, atol=1e-6)
    # The old network, run again, gets its own vectors (new ones where it
    # reads the edited globals too).
    np.testing.assert_allclose(embed(old, cache), embed(old, False), atol=1e-6)


def test_a_function_of_a_package_of_ones_own_is_read_too(tmp_path):
    """forward calls helpers.act: editing and reloading that package (as
    autoreload does) changes the key, though the global is the same package."""
    helpers = types.ModuleType("my_helpers")
    exec("def act(x):\n    return x * 2\n", helpers.__dict__)
    namespace = {"__name__": "notebook", "helpers": helpers, "nn": nn}
    exec(
        "class Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 3)\n"
        "    def forward(self, x):\n        return helpers.act(self.conv(x))\n",
        namespace,
    )
    torch.manual_seed(0)
    net = namespace["Net"]()
    before = embed(net, tmp_path / "cache")
    exec("def act(x):\n    return x * 3\n", helpers.__dict__)  # the package edited and reloaded
    np.testing.assert_allclose(embed(net, tmp_path / "cache"), before * 1.5, rtol=1e-5)


@pytest.mark.parametrize("what", MUTATIONS)
def test_a_change_outside_the_state_dict_is_a_new_key_and_refused_after_fit(tmp_path, what):
    cache = tmp_path / "cache"
    net = fresh_net(run_cell({"__name__": "notebook"}))
    extractor = PretrainedFeatureExtractor(net, preprocessing=TINY, cache=cache).fit()
    before = extractor.transform(X)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    mutate(net, what)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    expected = embed(copy.deepcopy(net), False)
    assert not np.allclose(expected, before)  # the change matters
    with pytest.raises(ValueError, match="changed since fit"):
        extractor.transform(X)
    np.testing.assert_allclose(extractor.fit().transform(X), expected, atol=1e-6)


def test_a_module_with_forward_hooks_is_not_cached_with_one_warning(tmp_path):
    cache = tmp_path / "cache"
    net = fresh_net(run_cell({"__name__": "notebook"}))
    handle = net.block.register_forward_hook(lambda module, inputs, output: output * 3)
    expected = embed(copy.deepcopy(net), False)
    extractor = PretrainedFeatureExtractor(net, preprocessing=TINY, cache=cache).fit()
    with pytest.warns(CacheWarning, match=r"not cached: its fingerprint cannot cover forward hooks on block"):
        np.testing.assert_allclose(extractor.transform(X), expected, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per module and process
        np.testing.assert_allclose(extractor.transform(X), expected, atol=1e-6)
    assert EmbeddingCache(cache).size() == (0, 0)
    # The hook removed: the network that runs is the module's as it is now, cached again.
    handle.remove()
    plain = embed(copy.deepcopy(net), False)
    assert not np.allclose(plain, expected)
    np.testing.assert_allclose(embed(net, cache), plain, atol=1e-6)
    assert EmbeddingCache(cache).size()[0] == len(X)


def test_an_attribute_that_cannot_be_fingerprinted_turns_the_cache_off(tmp_path):
    net = fresh_net(run_cell({"__name__": "notebook"}))
    net.generator = iter([1, 2, 3])  # state a digest cannot read
    assert module_identity(net).unkeyed == "generator holds a builtins.list_iterator, which cannot be fingerprinted"
    with pytest.warns(CacheWarning, match="generator"):
        embed(net, tmp_path / "cache")
    assert EmbeddingCache(tmp_path / "cache").size() == (0, 0)


def containers(inner):
    return st.lists(inner, max_size=3) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=3), inner)


simple = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    containers,
    max_leaves=8,
)


LINEAR = nn.Linear(2, 2)


def _typed(value):
    """A value with its types spelled out: 1 == 1.0 == True, yet they compute differently."""
    if isinstance(value, (list, tuple)):
        return type(value).__name__, [_typed(v) for v in value]
    if isinstance(value, dict):
        return "dict", [(k, _typed(v)) for k, v in value.items()]
    return type(value).__name__, repr(value)


@settings(max_examples=60, deadline=None)
@given(a=simple, b=simple)
def test_attribute_values_are_digested_exactly(a, b):
    def with_attribute(value):
        net = copy.deepcopy(LINEAR)
        net.setting = value
        return module_identity(net)

    first, second = with_attribute(a), with_attribute(b)
    assert first.unkeyed is None and second.unkeyed is None
    assert with_attribute(copy.deepcopy(a)) == first  # deterministic
    assert (first.digest == second.digest) == (_typed(a) == _typed(b))


def test_the_digest_is_the_same_in_another_process_whatever_its_hash_seed():
    code = textwrap.dedent(
        f"""
        import torch
        from skorchlite.backbones.identity import module_identity
        namespace = {{"__name__": "notebook"}}
        exec(compile({CELL!r}, "<cell>", "exec"), namespace)
        net = namespace["Net"]()
        net.tags = {{"a", "b", "c", "d"}}
        torch.manual_seed(0)
        for p in net.parameters():
            torch.nn.init.normal_(p)
        print(module_identity(net).digest)
        """
    )
    root = Path(__file__).resolve().parents[1]
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1


def test_an_entry_of_another_width_in_the_namespace_is_recomputed_with_a_warning(tmp_path):
    """The entry of one image holds a vector of another width (another
    model's, by hand or by a bug): transform warns, recomputes it and
    replaces the entry; it never fails."""
    cache = tmp_path / "cache"
    net = fresh_net(run_cell({"__name__": "notebook"}))
    extractor = PretrainedFeatureExtractor(net, preprocessing=TINY, cache=cache).fit()
    expected = embed(copy.deepcopy(net), False)
    namespace = EmbeddingCache(cache).namespace(extractor.fingerprint_)
    key = content_key(check_images(X)[1], 1)
    for width in (extractor.n_features_out_ - 1, extractor.n_features_out_ + 7):
        namespace.put(key, np.ones(width, np.float32))
        with pytest.warns(CacheWarning, match=rf"Cache entry .*{key}\.emb holds .*set aside"):
            np.testing.assert_allclose(extractor.transform(X), expected, atol=1e-6)
        np.testing.assert_allclose(namespace.get(key, dim=extractor.n_features_out_), expected[1], atol=1e-6)
