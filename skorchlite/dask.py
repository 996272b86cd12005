"""Embeddings and model search on a Dask cluster (the ``skorchlite[dask]`` extra).

Three pieces, each small, because Dask already schedules, retries and moves
data:

- :func:`extract` embeds a long list of image paths on the cluster's
  workers, one partition per task, into a :mod:`dask.array` or into ``.npy``
  shards on disk, in input order. Workers read the files themselves; the
  client sends only paths and receives only embeddings, and only when asked.
- :class:`TorchThreads`, a worker plugin that gives torch on each worker as
  many threads as the worker has cores, instead of all the machine's cores.
- :func:`read_shards` opens the shards :func:`extract` wrote.

Model search needs nothing of ours: scikit-learn's ``GridSearchCV`` and
``cross_val_score`` run on the cluster under
``joblib.parallel_config(backend="dask")``, and both estimators pickle small
(parameters only, never a network), with a shared embedding cache (a
``cache=`` path on a filesystem every worker mounts) so that clones on
different machines reuse each other's embeddings. See ``docs/scaling.md``.

The model is built once per worker process: tasks reuse the network the
extractor keeps per process. A task lost with its worker (killed, out of
memory, machine gone) is recomputed on another worker by Dask's scheduler
(up to ``distributed.scheduler.allowed-failures`` times); an unreadable
image fails the whole job with an error that names its index in ``paths``
and the path.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
import warnings
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any, cast

import numpy as np

try:
    import dask.array as da
    from dask.base import tokenize
    from distributed import Client, WorkerPlugin, as_completed, get_client
    from distributed.threadpoolexecutor import ThreadPoolExecutor
except ImportError as err:
    raise ImportError('skorchlite.dask needs Dask\'s distributed scheduler: pip install "skorchlite[dask]"') from err

from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .extractor import PretrainedFeatureExtractor
from .files import write_atomic
from .images import check_images
from .memory import keep_freed_memory
from .validation import Interval, check_params
from .versioning import __version__, describe_version

__all__ = ["TorchThreads", "extract", "read_shards"]

MANIFEST = "manifest.json"
_FORMAT = "skorchlite-embeddings"
_VERSION = 1
_SHARD = re.compile(r"part-\d+\.npy")


class TorchThreads(WorkerPlugin):
    """Set torch's thread count on every worker to the worker's own cores.

    A worker process started by a nanny gets ``OMP_NUM_THREADS=1`` (so torch
    uses one thread whatever the worker's size), and one started without a
    nanny gets all of the machine's cores (so several workers on one machine
    oversubscribe it). With this plugin each worker uses ``threads``, by
    default its ``nthreads``: the cores Dask gave it. Image decoding follows
    torch's thread count (see ``num_workers`` of the estimators).

    Registered once per cluster, it also applies to workers that join or
    restart later. One worker thread per process (``--nthreads 1``) with
    as many processes as cores suits extraction best; a worker with ``T``
    threads runs ``T`` tasks at once, each then using ``T`` torch threads.

    It also lets the worker keep freed memory for reuse (``keep_memory``):
    the nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which
    makes glibc hand every batch's activations (tens of MB each) back to
    the operating system and fault them in again for the next batch. On
    the 2-core development machine that doubled the page faults and made
    a worker 1.5-4x slower than the same code in a plain process. Start
    workers with ``MALLOC_ARENA_MAX=1`` as well (an environment variable,
    read when the process starts; ``distributed.nanny.pre-spawn-environ``
    in Dask's configuration): tasks run in a worker thread, whose own
    malloc arena otherwise still unmaps freed activations.

    Parameters
    ----------
    threads : int or None, default=None
        Torch threads per worker; ``None`` uses the worker's ``nthreads``.
    keep_memory : bool, default=True
        Raise glibc's mmap threshold to 256 MiB and its trim threshold to
        1 GiB in each worker (``mallopt``; nothing happens without glibc).
        A worker then holds up to about 1 GiB more than it uses.

    Examples
    --------
    >>> plugin = TorchThreads()
    >>> plugin.name, plugin.threads, plugin.keep_memory
    ('skorchlite-torch-threads', None, True)
    >>> client.register_plugin(plugin)  # doctest: +SKIP
    """

    # One per cluster: registering another TorchThreads replaces this one.
    name = "skorchlite-torch-threads"

    def __init__(self, threads: int | None = None, keep_memory: bool = True):
        # Checked here, not at setup: a bad value would fail on every worker, far from the call.
        check_params(
            {"threads": threads, "keep_memory": keep_memory},
            {"threads": [Interval(Integral, 1, None, closed="left"), None], "keep_memory": ["boolean"]},
            "TorchThreads",
        )
        self.threads = None if threads is None else int(threads)
        self.keep_memory = bool(keep_memory)

    def setup(self, worker: Any) -> None:
        """Called by Dask on each worker (now, and on workers that start later)."""
        import torch

        torch.set_num_threads(self.threads or worker.state.nthreads)
        _renew_executor_threads(worker)
        if self.keep_memory:
            keep_freed_memory()


def _renew_executor_threads(worker: Any) -> None:
    """Replace the worker's task threads, which may have run torch already.

    torch (OpenMP) reads its thread count into each thread once, at that
    thread's first parallel operation; later ``set_num_threads`` calls from
    other threads do not reach it. Fresh threads read the new count. Tasks
    running in the old threads finish there. Only public attributes of the
    worker are used; should a Dask release change them, tasks keep their
    threads and a warning says so.
    """
    try:
        old = worker.executors.get("default")
        if not isinstance(old, ThreadPoolExecutor):
            return
        # As distributed.Worker makes its default executor.
        worker.executors["default"] = ThreadPoolExecutor(
            worker.state.nthreads, thread_name_prefix="Dask-Default-Threads"
        )
    except (AttributeError, TypeError, KeyError) as err:
        warnings.warn(
            f"TorchThreads could not renew the task threads of worker {getattr(worker, 'name', '?')} ({err!r}); "
            "threads that already ran torch keep their thread count.",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    old.shutdown(wait=False)


def extract(
    paths: Sequence[str | os.PathLike],
    extractor: PretrainedFeatureExtractor,
    client: Client | None = None,
    partition_size: int = 256,
    output: str | os.PathLike | None = None,
    retries: int = 0,
) -> da.Array:
    """Embed image files on a Dask cluster, in input order.

    ``paths`` is cut into contiguous partitions, one task each; a task runs
    ``extractor.transform`` on its partition in a worker process, which
    builds the network once and keeps it for every later task. Images are
    read by the workers, never by the client. The extractor's cache works
    as in one process: give it a path that every worker sees (a shared
    filesystem) and each image is embedded once across the cluster, and
    again never.

    Parameters
    ----------
    paths : sequence of str or path-like
        Image files, readable from every worker under the same names.
    extractor : PretrainedFeatureExtractor
        Fitted or not (a clone is fitted here, on the client). ``cache=True``
        means each worker's own default cache folder.
    client : distributed.Client or None, default=None
        ``None`` uses the current client (the last one created).
    partition_size : int, default=256
        Images per task: the unit of scheduling and of recomputation after
        a lost worker.
    output : str, path-like or None, default=None
        ``None`` keeps the embeddings in the workers' memory, as the blocks
        of the returned array, computed in the background. A folder makes
        the workers write one ``part-NNNNN.npy`` per partition there (an
        atomic rename each) and this function wait for all of them, then
        write ``manifest.json``; the returned array reads the shards when
        computed. The folder must not contain other files; shards and a
        manifest of an earlier run are replaced (which invalidates arrays
        that read them).
    retries : int, default=0
        Extra attempts of a task that raised (a flaky network filesystem).
        A task lost with its worker is recomputed without counting here.

    Returns
    -------
    dask.array.Array of shape (len(paths), extractor.n_features_out_), dtype float32
        One chunk per partition, row ``i`` the embedding of ``paths[i]``.
        ``.compute()`` brings the embeddings to the client; ``.to_zarr``,
        ``.store`` or a reduction keep them on the cluster.

    Raises
    ------
    ValueError
        At ``.compute()`` (or here, with ``output``), when an image cannot be
        read: the message names its index in ``paths`` and the path.
    TypeError
        When ``paths`` holds arrays or PIL images: send those through
        ``extractor.transform`` in one process.

    See Also
    --------
    read_shards : Open the shards written with ``output``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from distributed import Client, LocalCluster
    >>> from skorchlite import PretrainedFeatureExtractor
    >>> folder = Path(tempfile.mkdtemp())
    >>> paths = []
    >>> for i in range(5):
    ...     paths.append(folder / f"{i}.png")
    ...     Image.fromarray(np.full((32, 32, 3), 50 * i, dtype=np.uint8)).save(paths[-1])
    >>> extractor = PretrainedFeatureExtractor(image_size=64, cache=folder / "cache")
    >>> with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster):
    ...     embeddings = extract(paths, extractor, partition_size=2)
    ...     print(embeddings.chunks[0], embeddings.compute().shape)
    (2, 2, 1) (5, 1280)
    """
    check_params(
        {
            "extractor": extractor,
            "client": client,
            "partition_size": partition_size,
            "output": output,
            "retries": retries,
        },
        {
            "extractor": [PretrainedFeatureExtractor],
            "client": [Client, None],
            "partition_size": [Interval(Integral, 1, None, closed="left")],
            "output": [str, os.PathLike, None],
            "retries": [Interval(Integral, 0, None, closed="left")],
        },
        "extract",
    )
    client = _client(client)
    samples = check_images(paths)  # validates and names bad entries by index; opens no file
    if not all(isinstance(s, Path) for s in samples):
        raise TypeError(
            "extract sends file paths to the workers, which read the images themselves; "
            "for arrays or PIL images in memory, use extractor.transform in this process."
        )
    partition_size, retries = int(partition_size), int(retries)
    extractor = _fitted(extractor)
    bounds = [(start, min(start + partition_size, len(samples))) for start in range(0, len(samples), partition_size)]
    files = cast("list[Path]", samples)  # all paths: checked above
    if output is None:
        return _to_array(client, extractor, files, bounds, retries)
    return _to_shards(client, extractor, files, bounds, Path(output).absolute(), partition_size, retries)


def read_shards(directory: str | os.PathLike) -> da.Array:
    """The embeddings :func:`extract` wrote to ``directory``, as a lazy array.

    Parameters
    ----------
    directory : str or path-like
        A folder with ``manifest.json`` (written last, so a folder without
        one holds an unfinished extraction).

    Returns
    -------
    dask.array.Array of shape (n_images, n_features), dtype float32
        One chunk per shard, in input order. Shards are read with
        ``numpy.load(allow_pickle=False)`` when computed.

    Raises
    ------
    FileNotFoundError
        When the manifest is missing.
    ValueError
        When the manifest is not one :func:`extract` writes, or a shard's
        shape does not match it (at compute time).

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> folder = Path(tempfile.mkdtemp())
    >>> np.save(folder / "part-00000.npy", np.ones((3, 2), dtype=np.float32))
    >>> manifest = {"format": "skorchlite-embeddings", "version": 1, "n_images": 3, "n_features": 2,
    ...             "dtype": "float32", "shards": [{"file": "part-00000.npy", "start": 0, "stop": 3}]}
    >>> _ = (folder / "manifest.json").write_text(json.dumps(manifest))
    >>> total = read_shards(folder).sum().compute()
    >>> float(total), total.dtype
    (6.0, dtype('float32'))
    """
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{directory / MANIFEST} not found: not an extract() output folder, or the extraction did not finish."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT or manifest.get("version") != _VERSION:
        recorded = manifest.get("skorchlite") if isinstance(manifest, dict) else None
        written = f", written by {describe_version(recorded)}" if recorded is not None else ""
        raise ValueError(
            f"{directory / MANIFEST} is not a {_FORMAT} manifest of version {_VERSION}{written}; "
            f"this is skorchlite {__version__}."
        )
    dim, shards = int(manifest["n_features"]), manifest["shards"]
    if [s["start"] for s in shards] != [0, *(s["stop"] for s in shards[:-1])] or shards[-1]["stop"] != manifest[
        "n_images"
    ]:
        raise ValueError(f"{directory / MANIFEST}: the shards do not cover rows 0 to {manifest['n_images']} in order.")
    name = "skorchlite-shards-" + tokenize(str(directory.resolve()), manifest)
    graph = {
        (name, i, 0): (_load_shard, str(directory / s["file"]), s["stop"] - s["start"], dim)
        for i, s in enumerate(shards)
    }
    chunks = (tuple(s["stop"] - s["start"] for s in shards), (dim,))
    return da.Array(graph, name, chunks, meta=np.empty((0, 0), dtype=np.float32))


# --------------------------------------------------------------- client side
def _client(client: Client | None) -> Client:
    if client is not None:
        return client
    try:
        return get_client()
    except ValueError:
        raise ValueError(
            "No Dask client: create one first, e.g. Client(LocalCluster()) on this machine or "
            "Client('tcp://scheduler:8786') for a cluster, or pass client=."
        ) from None


def _fitted(extractor: PretrainedFeatureExtractor) -> PretrainedFeatureExtractor:
    try:
        check_is_fitted(extractor, "fingerprint_")
    except NotFittedError:
        return clone(extractor).fit()  # the caller's object stays as it was
    # Parameters set since fit meet fit's checks here, once, not on every worker.
    extractor._fitted_backbone()
    return extractor


def _to_array(
    client: Client,
    extractor: PretrainedFeatureExtractor,
    samples: list[Path],
    bounds: list[tuple[int, int]],
    retries: int,
) -> da.Array:
    # One graph layer of one task per partition: a layer per partition (as
    # concatenating from_delayed arrays gives) makes the scheduler crawl.
    name = f"skorchlite-extract-{uuid.uuid4().hex}"
    graph = {(name, i, 0): (_embed, extractor, samples[a:b], a) for i, (a, b) in enumerate(bounds)}
    chunks = (tuple(b - a for a, b in bounds), (extractor.n_features_out_,))
    lazy = da.Array(graph, name, chunks, meta=np.empty((0, 0), dtype=np.float32))
    return client.persist(lazy, retries=retries)


def _to_shards(
    client: Client,
    extractor: PretrainedFeatureExtractor,
    samples: list[Path],
    bounds: list[tuple[int, int]],
    folder: Path,
    partition_size: int,
    retries: int,
) -> da.Array:
    _prepare_output(folder)
    width = max(5, len(str(len(bounds) - 1)))
    files = [f"part-{i:0{width}d}.npy" for i in range(len(bounds))]
    futures = client.map(
        _embed_to_file,
        [extractor] * len(bounds),
        [samples[a:b] for a, b in bounds],
        [a for a, _ in bounds],
        [str(folder / f) for f in files],
        key=[f"skorchlite-shard-{uuid.uuid4().hex}-{i}" for i in range(len(bounds))],
        retries=retries,
    )
    pending = {future.key: future for future in futures}
    try:
        # Results are row counts, not vectors: nothing big comes back here.
        for future in as_completed(futures):
            future.result()
            # A written shard is done: released, it is not recomputed if its worker dies later.
            pending.pop(future.key).release()
    except BaseException:
        client.cancel(list(pending.values()))
        raise
    for path in folder.iterdir():  # shards of an earlier, longer run; temp files of lost tasks
        if (_SHARD.fullmatch(path.name) and path.name not in files) or path.name.startswith(".tmp-"):
            path.unlink(missing_ok=True)
    manifest = {
        "format": _FORMAT,
        "version": _VERSION,
        "skorchlite": __version__,
        "n_images": len(samples),
        "n_features": extractor.n_features_out_,
        "dtype": "float32",
        "partition_size": partition_size,
        "fingerprint": extractor.fingerprint_,
        "shards": [{"file": f, "start": a, "stop": b} for f, (a, b) in zip(files, bounds, strict=True)],
    }
    write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return read_shards(folder)


def _prepare_output(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    foreign = sorted(
        p.name
        for p in folder.iterdir()
        if p.name != MANIFEST and not _SHARD.fullmatch(p.name) and not p.name.startswith(".tmp-")
    )
    if foreign:
        raise FileExistsError(
            f"output folder {folder} holds other files ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new folder."
        )
    # The manifest marks a finished extraction: gone until this one finishes.
    (folder / MANIFEST).unlink(missing_ok=True)


# --------------------------------------------------------------- worker side
def _embed(extractor: PretrainedFeatureExtractor, samples: list[Path], first_index: int) -> np.ndarray:
    """One partition's embeddings; errors name indices in the whole ``paths``."""
    return extractor.transform_samples(samples, first_index=first_index)


def _embed_to_file(extractor: PretrainedFeatureExtractor, samples: list[Path], first_index: int, path: str) -> int:
    buffer = io.BytesIO()
    np.save(buffer, _embed(extractor, samples, first_index), allow_pickle=False)
    # Atomic, so a worker killed mid-write leaves no partial shard behind.
    write_atomic(Path(path), buffer.getvalue())
    return len(samples)


def _load_shard(path: str, rows: int, dim: int) -> np.ndarray:
    array = np.load(path, allow_pickle=False)
    if array.shape != (rows, dim) or array.dtype != np.float32:
        raise ValueError(f"{path}: expected float32 of shape {(rows, dim)}, found {array.dtype} {array.shape}.")
    return array
