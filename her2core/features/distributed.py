"""Cohort feature extraction on Ray: the per-case work of many machines.

``FeatureExtractor.extract_cohort(..., executor=RayExecutor(address))`` (and
``extract_cohort_features(..., executor=)``) sends the cases still missing from
the feature cache to Ray in chunks of ``config.batch_size`` (the batches the
local path forms; smaller when there are fewer cases than workers x batch), and the driver writes each chunk's rows into the same
per-case feature cache as soon as it arrives, so an interrupted run resumes
from the cache. Without an executor everything runs locally as before.

Two layouts, chosen from the cluster's resources:

* CPU (no GPU in the cluster, or ``device="cpu"``): ``workers`` actors, each
  with ``cpus_per_worker`` CPUs and its own copy of the backbones, load, crop,
  compute radiomics and run the networks of whole chunks.
* GPU: CPU tasks (one CPU each, as many at once as the cluster has CPUs) load,
  crop and compute radiomics; one actor per GPU (``gpus_per_worker``) holds
  the backbones and runs the batched forward passes on what they prepared.
  ``split=True`` forces this layout on CPUs (tests).

Bad input behaves as locally: a case whose files are broken comes back as a
Her2Error naming the case and the file, and the other cases finish. A worker
that dies (out of memory, a crash) has its chunk retried one case at a time;
a case that kills a worker again is reported with its case id and folder.

Every node must see the cohort at the same path (a shared file system) and
import the same her2core (shipped with the job by default). Each actor checks
that its backbone weights have the driver's identity (sha256 or random-init),
so features from different machines are never mixed silently.

Command-line use: ``add_ray_argument(parser)`` adds ``--ray [ADDRESS]`` and
``--ray-workers N``; ``executor_from_args(args)`` gives a RayExecutor or None.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import Her2Error

log = logging.getLogger(__name__)

#: object store of a local Ray started here (the rows and crops are small)
LOCAL_OBJECT_STORE_BYTES = 1 << 30


def _ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is in requirements.txt
        raise Her2Error("--ray needs the ray package", hint="pip install ray") from exc
    return ray


def _package_dir() -> str:
    return str(Path(__file__).resolve().parents[1])


# ----------------------------------------------------------------- worker side
def _worker_setup(threads: int) -> None:
    import SimpleITK as sitk
    import torch
    logging.getLogger("radiomics").setLevel(logging.WARNING)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, int(threads)))
    torch.set_num_threads(max(1, int(threads)))


def _prepare_items(items, config, plan):
    """Collated deep.Batch of a chunk: per-case errors captured (as CohortDataset)."""
    from . import deep
    from .extract import CohortDataset
    ds = CohortDataset(list(items), config, plan)
    return deep.collate([ds[i] for i in range(len(ds))])


class _ExtractWorker:
    """Ray actor body: a FeatureExtractor on this node (ray.remote applied at run time)."""

    def __init__(self, config_dict: dict, weights: dict, threads: int, device: str):
        from .config import FeatureConfig
        from .extract import FeatureExtractor
        _worker_setup(threads)
        cfg = FeatureConfig.from_dict(dict(config_dict, device=device))
        self.extractor = FeatureExtractor(cfg)
        mine = self.extractor.weights
        if mine != weights:
            bad = sorted(k for k in weights if mine.get(k) != weights[k])
            raise Her2Error(f"node {socket.gethostname()} has other backbone weights than the "
                            f"driver for {', '.join(bad)}",
                            hint="give every node the same weights files (HER2_WEIGHTS_DIR)")
        self.extractor._versions = self.extractor.versions()

    def info(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "device": self.extractor.device,
                "versions": self.extractor._versions}

    def extract(self, items):
        """Rows, per-case errors and CPU seconds of a chunk: load, crop, radiomics, forward."""
        c0 = time.process_time()
        batch = _prepare_items(items, self.extractor.config, self.extractor.plan)
        return self.extractor._rows(batch), list(batch.errors), time.process_time() - c0

    def forward(self, batch):
        """Rows of a batch prepared by a CPU task (GPU layout)."""
        c0 = time.process_time()
        return self.extractor._rows(batch), list(batch.errors), time.process_time() - c0


def _prepare_task(items, config_dict: dict, plan: dict):
    from .config import FeatureConfig
    _worker_setup(1)
    return _prepare_items(items, FeatureConfig.from_dict(config_dict), plan)


# ----------------------------------------------------------------- driver side
@dataclass
class RayExecutor:
    """Run ``extract_cohort``'s per-case work on a Ray cluster.

    Attributes:
        address: None starts a local Ray on this machine (``num_cpus`` CPUs, all
            when None); "auto" joins the cluster this machine is a node of; or
            the head's address ("HOST:6379", or "ray://HOST:10001" for Ray Client).
            A Ray already initialised in this process is used as it is.
        workers: extraction actors (None: one per GPU in the GPU layout, else
            one per ``cpus_per_worker`` CPUs of the cluster).
        cpus_per_worker: CPUs (and torch threads) of each CPU actor.
        gpus_per_worker: GPUs of each GPU actor (None: 1 when the cluster has
            GPUs and the config's device is not "cpu"; 0 forces the CPU layout;
            0.5 puts two actors on each GPU).
        split: use separate CPU tasks for loading / cropping even without GPUs.
        max_in_flight: chunks queued at once per actor.
        ship_code: send this her2core with the job (``runtime_env`` py_modules),
            so the nodes need only the dependencies, not the checkout.
        num_cpus: CPUs of a local Ray started here (ignored for a cluster).
        start_timeout_s: how long the actors may wait for free CPUs / GPUs (e.g.
            an autoscaling cluster adding nodes) before a Her2Error says so.
        init_kwargs: more ``ray.init`` arguments.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None
    split: bool = False
    max_in_flight: int = 2
    ship_code: bool = True
    num_cpus: int | None = None
    start_timeout_s: float = 600.0
    init_kwargs: dict = field(default_factory=dict)
    #: filled while running: hosts / devices of the actors, counts
    info: dict = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._started = False
        self._pools: dict[tuple, list] = {}
        if self.workers is not None and int(self.workers) < 1:
            raise Her2Error(f"Ray workers must be >= 1, got {self.workers}")

    # -------------------------------------------------------------- lifecycle
    def connect(self):
        """Initialise Ray (once); returns the ray module."""
        ray = _ray()
        if ray.is_initialized():
            return ray
        kw: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                              "include_dashboard": False, "logging_level": logging.WARNING}
        if self.ship_code:
            kw["runtime_env"] = {"py_modules": [_package_dir()]}
        if self.address in (None, "", "local"):
            if self.num_cpus is not None:
                kw["num_cpus"] = int(self.num_cpus)
            kw["object_store_memory"] = LOCAL_OBJECT_STORE_BYTES
        else:
            kw["address"] = self.address
            kw.pop("include_dashboard")
        kw.update(self.init_kwargs)
        t0 = time.perf_counter()
        try:
            ray.init(**kw)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise Her2Error(f"cannot connect to Ray at {self.address or 'a new local instance'}: "
                            f"{str(exc).splitlines()[0][:300]}",
                            hint="start the cluster (ray start --head) or check the address; "
                                 "without --ray everything runs on this machine") from None
        self._started = True
        self.info["connect_s"] = round(time.perf_counter() - t0, 2)
        log.info("Ray: %s in %.1f s, resources %s", self.address or "local instance",
                 self.info["connect_s"], ray.cluster_resources())
        return ray

    def _kill_pools(self) -> None:
        ray = _ray()
        for pool in self._pools.values():
            for a in pool:
                try:
                    ray.kill(a)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        self._pools.clear()

    def _check_fits(self, lay: dict) -> None:
        """Her2Error now rather than actors waiting forever for resources that do not exist."""
        res = lay["cluster"]
        cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
        need_cpu = lay["workers"] * lay["num_cpus"] + (1 if lay["split"] else 0)
        need_gpu = lay["workers"] * lay["num_gpus"]
        if need_cpu > cpus + 1e-9 or need_gpu > gpus + 1e-9:
            raise Her2Error(
                f"{lay['workers']} Ray worker(s) need {need_cpu:g} CPU and {need_gpu:g} GPU, the "
                f"cluster has {cpus:g} CPU and {gpus:g} GPU",
                hint="ask for fewer workers (--ray-workers) or add nodes to the cluster")

    def close(self) -> None:
        """Kill the actors; shut down a Ray this executor started."""
        ray = _ray()
        self._kill_pools()
        if self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- layout
    def _layout(self, ray, config) -> dict[str, Any]:
        res = ray.cluster_resources()
        cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
        want_gpu = self.gpus_per_worker
        if want_gpu is None:
            want_gpu = 1.0 if gpus > 0 and config.device != "cpu" else 0.0
        if want_gpu > 0 and gpus <= 0:
            raise Her2Error("GPU workers asked for but the Ray cluster has no GPU",
                            hint="leave gpus_per_worker unset or use device cpu")
        if config.device == "cuda" and want_gpu <= 0:
            raise Her2Error("device 'cuda' asked for but the Ray cluster has no GPU",
                            hint="use device 'auto' or 'cpu'")
        if want_gpu > 0:
            n = self.workers or max(1, min(int(gpus // want_gpu), int(cpus) - 1))
            return {"gpu": True, "split": True, "workers": n, "num_gpus": want_gpu,
                    "num_cpus": 1.0, "threads": 1, "device": "cuda", "cluster": res}
        cpw = max(float(self.cpus_per_worker), 0.0) or 1.0
        if self.split:  # actors for the forward, the other CPUs for the preparing tasks
            n = self.workers or max(1, int((cpus - 1) // (2 * cpw)))
            return {"gpu": False, "split": True, "workers": n, "num_gpus": 0, "num_cpus": cpw,
                    "threads": max(1, int(cpw)), "device": "cpu", "cluster": res}
        n = self.workers or max(1, int(cpus // cpw))
        return {"gpu": False, "split": False, "workers": n, "num_gpus": 0, "num_cpus": cpw,
                "threads": max(1, int(cpw)), "device": "cpu", "cluster": res}

    def _actors(self, ray, extractor, lay) -> list:
        cfg = extractor.config
        key = (cfg.to_json(), lay["workers"], lay["num_cpus"], lay["num_gpus"], lay["device"])
        if key in self._pools:
            return self._pools[key]
        self._kill_pools()  # actors of another config or layout hold resources
        self._check_fits(lay)
        Worker = ray.remote(_ExtractWorker).options(
            num_cpus=lay["num_cpus"], num_gpus=lay["num_gpus"], max_restarts=3,
            max_task_retries=0)
        actors = [Worker.remote(cfg.to_dict(), extractor.weights, lay["threads"], lay["device"])
                  for _ in range(lay["workers"])]
        try:
            infos = ray.get([a.info.remote() for a in actors], timeout=self.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            for a in actors:
                ray.kill(a)
            free = ray.available_resources()
            raise Her2Error(
                f"{lay['workers']} Ray worker(s) did not start within {self.start_timeout_s:.0f} s "
                f"(free now: {free.get('CPU', 0):g} CPU, {free.get('GPU', 0):g} GPU; other jobs "
                f"may hold the rest)", hint="ask for fewer workers (--ray-workers) or wait for "
                "the cluster to be free") from None
        except ray.exceptions.RayActorError as exc:
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, Her2Error):
                raise cause from None
            err = _unwrap_her2(exc)
            if err is not None:
                raise err from None
            raise Her2Error(f"the Ray extraction workers did not start: {str(exc).splitlines()[0][:300]}",
                            hint="check that every node has the dependencies (pip install -r "
                                 "requirements.txt) and enough memory") from None
        self.info["actors"] = infos
        self._pools[key] = actors
        return actors

    def describe(self) -> dict[str, Any]:
        """What ran where (for provenance); filled after a run."""
        return {"executor": "ray", "address": self.address or "local", **self.info}

    def start(self, extractor) -> list[dict]:
        """Start the workers for ``extractor`` now (else the first run starts them).

        Returns one dict per worker (host, pid, device). Workers stay up until
        :meth:`close` or until another config / layout needs the resources.
        """
        ray = self.connect()
        lay = self._layout(ray, extractor.config)
        self._actors(ray, extractor, lay)
        return list(self.info.get("actors", []))

    # -------------------------------------------------------------- running
    def map_batches(self, extractor, todo: list[tuple[str, Any]]
                    ) -> Iterator[tuple[dict[str, tuple], list[Her2Error]]]:
        """Yield (rows by case id, per-case errors) per finished chunk of ``todo``."""
        ray = self.connect()
        cfg = extractor.config
        lay = self._layout(ray, cfg)
        actors = self._actors(ray, extractor, lay)
        self.info.update({k: v for k, v in lay.items() if k != "cluster"},
                         cluster={k: v for k, v in lay["cluster"].items() if not k.startswith("node:")})
        # chunks of batch_size cases (the local path's batches); fewer per chunk when the
        # cohort is too small to give every worker one
        bs = max(1, min(int(cfg.batch_size), -(-len(todo) // len(actors))))
        self.info["chunk_size"] = bs
        queue = deque((tuple(todo[i:i + bs]), False) for i in range(0, len(todo), bs))
        cfg_dict = cfg.to_dict()
        prep = ray.remote(_prepare_task).options(num_cpus=1) if lay["split"] else None
        inflight: dict[Any, tuple[tuple, bool, int]] = {}
        load = [0] * len(actors)
        per_actor = max(1, int(self.max_in_flight))

        def submit(ai: int) -> None:
            chunk, single = queue.popleft()
            if prep is not None:
                ref = actors[ai].forward.remote(prep.remote(list(chunk), cfg_dict, extractor.plan))
            else:
                ref = actors[ai].extract.remote(list(chunk))
            inflight[ref] = (chunk, single, ai)
            load[ai] += 1

        def fill() -> None:
            while queue:
                ai = min(range(len(actors)), key=lambda i: load[i])
                if load[ai] >= per_actor:
                    return
                submit(ai)

        n_retried = 0
        self.info["worker_cpu_s"] = 0.0   # CPU seconds the workers spent (this run)
        try:
            fill()
            while inflight:
                ready, _ = ray.wait(list(inflight), num_returns=1)
                ref = ready[0]
                chunk, single, ai = inflight.pop(ref)
                load[ai] -= 1
                try:
                    rows, errors, cpu_s = ray.get(ref)
                    self.info["worker_cpu_s"] = self.info.get("worker_cpu_s", 0.0) + cpu_s
                except ray.exceptions.RayError as exc:
                    err = _unwrap_her2(exc)
                    if not single and len(chunk) > 1:
                        # isolate the case that broke the worker: the others still finish
                        log.warning("Ray: a chunk of %d cases failed (%s); retrying them one by one",
                                    len(chunk), _short(exc))
                        queue.extend(((it,), True) for it in chunk)
                        n_retried += len(chunk)
                        fill()
                        continue
                    rows = {}
                    errors = [_case_failure(it, extractor.config, exc, err) for it in chunk]
                fill()
                yield rows, errors
        finally:  # stopped early (an error or an interrupt in the caller): drop queued work
            for ref in inflight:
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - already finished
                    pass
            self.info["retried_cases"] = n_retried


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:200]


def _unwrap_her2(exc: BaseException) -> Her2Error | None:
    """The Her2Error inside a Ray error (raised in a task or an actor constructor), if any."""
    seen = 0
    cur: Any = exc
    while cur is not None and seen < 5:
        if isinstance(cur, Her2Error):
            return cur
        nxt = getattr(cur, "cause", None)
        if nxt is None and hasattr(cur, "as_instanceof_cause"):
            try:
                inst = cur.as_instanceof_cause()
                nxt = inst if inst is not cur and isinstance(inst, Her2Error) else None
            except Exception:  # noqa: BLE001
                nxt = None
        cur = nxt if nxt is not cur else None
        seen += 1
    return None


def _case_failure(item, config, exc: BaseException, her2: Her2Error | None) -> Her2Error:
    """A Her2Error for a case whose worker died or failed (as a local failure reads)."""
    from .extract import used_files
    cid, files = item
    if her2 is not None:
        return her2.with_context(case_id=cid)
    try:
        paths = used_files(files, config)
        where: Any = Path(next(iter(paths.values()))).parent
    except Exception:  # noqa: BLE001 - the case folder is only for the message
        where = None
    _ray_mod = _ray()
    died = isinstance(exc, (_ray_mod.exceptions.RayActorError, _ray_mod.exceptions.WorkerCrashedError,
                            _ray_mod.exceptions.OutOfMemoryError, _ray_mod.exceptions.NodeDiedError))
    if died:
        msg = f"the Ray worker died while extracting this case ({_short(exc)})"
        hint = "the case was skipped; it may need more memory than a worker has (fewer workers per node)"
    else:
        msg = f"feature extraction failed on a Ray worker: {_short(exc)}"
        hint = "the case was skipped; see the worker log for details"
    return Her2Error(msg, case_id=cid, file=where, hint=hint)


# ----------------------------------------------------------------- command line
def add_ray_argument(parser) -> None:
    """``--ray [ADDRESS]`` and ``--ray-workers N`` for a command that extracts features."""
    parser.add_argument(
        "--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
        help="run the per-case feature extraction on Ray: without ADDRESS a local Ray on this "
             "machine; 'auto' the cluster this machine belongs to; HOST:6379 or "
             "ray://HOST:10001 an existing cluster (every node must see the cohort at the same "
             "path). Without --ray everything runs here as usual")
    parser.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="Ray extraction workers (default: one per GPU, else one per CPU)")


def executor_from_args(args) -> RayExecutor | None:
    """The RayExecutor the ``--ray`` arguments ask for, or None (local extraction)."""
    address = getattr(args, "ray", None)
    if address is None:
        return None
    workers = getattr(args, "ray_workers", None)
    return RayExecutor(address=None if address == "local" else address, workers=workers)
