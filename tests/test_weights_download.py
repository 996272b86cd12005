"""Weights fetched on first use (issue 27, point 3).

Every download here comes from a server of the test's own on 127.0.0.1,
which SKORCHLITE_WEIGHTS_MIRROR points at; no test touches the internet.
The weights served are RANDOM (a seeded initialisation), named as such:
they test the fetching, not ImageNet accuracy.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import io
import os
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skorchlite.backbones import BackboneUnavailableError, TorchvisionSource, get_backbone, offline_backbones
from skorchlite.backbones.download import fetch_file

NAME = "shufflenet_v2_x0_5"  # one of torchvision's smallest classification models
MEMBER = torchvision.models.ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1


@pytest.fixture
def server(monkeypatch):
    """An HTTP server on 127.0.0.1 serving ``files`` (name -> bytes) and
    the mirror variable pointing at it; ``cut[name] = n`` sends only the
    first n bytes of a file under its full Content-Length."""
    files: dict[str, bytes] = {}
    cut: dict[str, int] = {}
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            name = self.path.rsplit("/", 1)[-1]
            if name not in files:
                self.send_error(404)
                return
            data = files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: cut.get(name, len(data))])

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.delenv("SKORCHLITE_OFFLINE", raising=False)
    monkeypatch.setenv("SKORCHLITE_WEIGHTS_MIRROR", f"http://127.0.0.1:{httpd.server_port}/mirror/")
    yield SimpleNamespace(files=files, cut=cut, requests=requests)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _random_weights() -> tuple[dict[str, torch.Tensor], bytes]:
    torch.manual_seed(0)
    state = torchvision.models.get_model(NAME, weights=None).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return state, buffer.getvalue()


def _publish(monkeypatch, data: bytes, prefix: str | None = None) -> str:
    """Name the weights member's file after ``data``'s hash (or ``prefix``),
    as torchvision names its files, under torchvision's own host."""
    file_name = f"random-{NAME}-{prefix or hashlib.sha256(data).hexdigest()[:10]}.pth"
    monkeypatch.setattr(
        TorchvisionSource, "url", lambda self, member: f"https://download.pytorch.org/models/{file_name}"
    )
    return file_name


def _checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _left_in_cache() -> list[str]:
    return sorted(p.name for p in _checkpoints().iterdir()) if _checkpoints().exists() else []


def test_missing_weights_are_downloaded_checked_and_loaded(server, monkeypatch):
    state, data = _random_weights()
    file_name = _publish(monkeypatch, data)
    server.files[file_name] = data
    assert NAME not in offline_backbones()

    backbone = get_backbone(NAME)
    assert server.requests == [f"/mirror/{file_name}"]
    assert _left_in_cache() == [file_name]
    assert (_checkpoints() / file_name).read_bytes() == data
    assert backbone.weights.id == repr(MEMBER) and backbone.weights.path == _checkpoints() / file_name
    assert backbone.weights.sha256 == hashlib.sha256(data).hexdigest()
    assert torch.equal(backbone.model.conv1[0].weight, state["conv1.0.weight"])
    assert torch.equal(backbone.classifier.weight, state["fc.weight"])
    # Fetched once: the next use reads the cache, even offline.
    monkeypatch.setenv("SKORCHLITE_OFFLINE", "1")
    assert get_backbone(NAME).weights.sha256 == backbone.weights.sha256
    assert NAME in offline_backbones() and len(server.requests) == 1


def test_a_downloaded_file_is_still_read_with_weights_only(server, monkeypatch):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo unpickled",))

    buffer = io.BytesIO()
    torch.save({"conv1.0.weight": Payload()}, buffer)
    file_name = _publish(monkeypatch, buffer.getvalue())
    server.files[file_name] = buffer.getvalue()
    with pytest.raises(ValueError, match=f"{file_name}.*never loaded"):
        get_backbone(NAME)


@pytest.mark.parametrize("failure", ["wrong hash", "cut off", "404"])
def test_a_failed_download_leaves_nothing_in_the_cache_and_says_so(server, monkeypatch, failure):
    _, data = _random_weights()
    file_name = _publish(monkeypatch, data, prefix="0123456789" if failure == "wrong hash" else None)
    if failure != "404":
        server.files[file_name] = data
    if failure == "cut off":
        server.cut[file_name] = len(data) // 2
    with pytest.raises(BackboneUnavailableError) as info:
        get_backbone(NAME)
    message = str(info.value)
    expected = {
        "wrong hash": "does not start with 0123456789",
        "cut off": f"cut off: {len(data) // 2:,} of {len(data):,} bytes",
        "404": "HTTP Error 404",
    }[failure]
    assert expected in message and f"nothing was kept in {str(_checkpoints())!r}" in message
    assert f"/mirror/{file_name}" in message and "\n" not in message
    assert _left_in_cache() == []
    assert NAME not in offline_backbones()


@pytest.mark.parametrize("variable", ["SKORCHLITE_OFFLINE"])
def test_offline_refuses_any_download_and_names_the_exact_path(server, monkeypatch, variable):
    _, data = _random_weights()
    file_name = _publish(monkeypatch, data)
    server.files[file_name] = data
    monkeypatch.setenv(variable, "1")
    with pytest.raises(BackboneUnavailableError) as info:
        get_backbone(NAME)
    message = str(info.value)
    assert f"{variable}=1 forbids downloading" in message
    assert repr(str(_checkpoints() / file_name)) in message and "TORCH_HOME" in message
    assert server.requests == [] and _left_in_cache() == []


def test_hf_hub_offline_alone_does_not_stop_torchvision_downloads(server, monkeypatch):
    _, data = _random_weights()
    server.files[_publish(monkeypatch, data)] = data
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    get_backbone(NAME)
    assert len(server.requests) == 1


@pytest.mark.parametrize("mirror", ["ftp://weights.example/models", "file:///srv/models", "weights.example"])
def test_a_mirror_that_is_not_an_http_url_is_refused(server, monkeypatch, mirror):
    monkeypatch.setenv("SKORCHLITE_WEIGHTS_MIRROR", mirror)
    with pytest.raises(BackboneUnavailableError, match="SKORCHLITE_WEIGHTS_MIRROR.*not an http"):
        get_backbone(NAME)
    assert server.requests == [] and _left_in_cache() == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=3000), fraction=st.floats(0, 1), right_name=st.booleans())
def test_a_download_is_kept_only_when_complete_and_of_its_hash(server, data, fraction, right_name):
    sent = min(len(data), int(fraction * (len(data) + 1)))
    digest = hashlib.sha256(data).hexdigest()
    name = f"random-{digest[:8] if right_name else 'f' * 8}.bin"
    server.files[name], server.cut[name] = data, sent
    good = sent == len(data) and (right_name or digest.startswith("f" * 8))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cache" / name
        try:
            fetch_file(f"https://weights.example/{name}", path, what="Random bytes")
        except BackboneUnavailableError as err:
            assert not good and "nothing was kept" in str(err)
            assert not path.parent.exists() or list(path.parent.iterdir()) == []
        else:
            assert good and path.read_bytes() == data and list(path.parent.iterdir()) == [path]


# ----------------------------------------------------------------- timm
@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="optional extra: pip install 'skorchlite[timm]'")
@pytest.mark.parametrize("variable", ["SKORCHLITE_OFFLINE", "HF_HUB_OFFLINE", None])
def test_timm_weights_are_fetched_by_huggingface_hub_unless_offline(tmp_path, monkeypatch, variable):
    import huggingface_hub
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    name = "mobilenetv3_small_050.lamb_in1k"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    for each in ("SKORCHLITE_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(each, raising=False)
    if variable:
        monkeypatch.setenv(variable, "1")
    calls = []

    def fake_download(repo, filename, cache_dir):
        # What huggingface_hub leaves in its cache: RANDOM weights in its layout.
        calls.append((repo, filename))
        snapshot = Path(cache_dir) / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        (snapshot.parents[1] / "refs").mkdir()
        (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
        torch.manual_seed(0)
        save_file(timm.create_model(name, pretrained=False).state_dict(), snapshot / filename)
        return str(snapshot / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    if variable:
        with pytest.raises(BackboneUnavailableError) as info:
            get_backbone(f"timm/{name}")
        message = str(info.value)
        assert f"{variable}=1 forbids downloading" in message and f"huggingface-cli download timm/{name}" in message
        assert str(tmp_path / "hf") in message and calls == []
    else:
        backbone = get_backbone(f"timm/{name}")
        assert calls == [(f"timm/{name}", "model.safetensors")]
        assert backbone.weights.id == f"timm/{name}@hf:timm/{name}/model.safetensors"
