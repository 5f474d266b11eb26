"""An uploaded artifact is loaded, and asked its first prediction, in a child process with a memory and CPU limit
before this process loads it: the trusted-type list and the tree checks stand between a crafted file and compiled
code, and if anything gets past them the child dies, not the web worker, and the file is refused.

The children fork from a forkserver that has the ML libraries imported, so a check costs a fraction of a second, not
the seconds of a fresh interpreter. A file that passed is not checked again by the same process while it is among
the last PASSED_KEPT that passed (the same bytes under the same limits: a model registered again, or sent as a
gate candidate after its registration); a refusal is never remembered.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import signal
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from monitor.registry.artifacts import ArtifactError

MEMORY_LIMIT_BYTES = 4 * 2**30
CPU_LIMIT_SECONDS = 60
WALL_LIMIT_SECONDS = 120.0
PRELOAD = ["numpy", "pandas", "sklearn.ensemble", "sklearn.pipeline", "sklearn.compose", "skops.io",
           "monitor.registry.artifacts"]

_forkserver: Any = None
PASSED_KEPT = 256
_passed: OrderedDict[bytes, None] = OrderedDict()  # digests of (file, limits) that passed, newest last
_passed_lock = threading.Lock()


def _process_context() -> Any:
    """Children come from a forkserver that has the ML libraries imported but has run nothing: a plain fork of
    this process would copy the state of thread pools it may have started (OpenMP under XGBoost, LightGBM and
    scikit-learn's histogram boosting), and a child of such a fork can hang forever on a lock no thread will free —
    measured: a LightGBM registration forked after another LightGBM prediction hung until the wall limit. The
    forkserver's first start takes a few seconds; each child after that about 0.25 s."""
    global _forkserver
    if _forkserver is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        _forkserver = context
    return _forkserver


def _child(data: bytes, fmt: str, max_unpacked: int, probe: Any, answer: Any, memory: int, cpu: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    from monitor.registry import artifacts

    try:
        if fmt == "skops":
            artifacts.check_zip(data, max_unpacked=max_unpacked)
        predictor = artifacts.load_artifact(data, fmt)
    except ArtifactError as exc:
        if not isinstance(exc.__cause__, MemoryError):
            answer.send(("refused", str(exc)))
            return
        answer.send(("refused", f"loading the artifact needs more than {memory / 2**30:.1f} GiB of memory"))
        return
    except MemoryError:
        answer.send(("refused", f"loading the artifact needs more than {memory / 2**30:.1f} GiB of memory"))
        return
    except Exception as exc:  # reported to the uploader as it is; the parent loads nothing
        answer.send(("refused", f"the artifact cannot be loaded within the sandbox's limits ({memory / 2**30:.1f} GiB "
                                f"of memory, {cpu} s of CPU): {type(exc).__name__}: {exc}"[:500]))
        return
    try:
        predictor.predict_proba(probe)
    except Exception:  # noqa: S110  # a probe the model rejects is no crash: the real rows are checked later
        pass
    answer.send(("ok", ""))


def check_in_sandbox(data: bytes, fmt: str, *, max_unpacked: int, n_features: int | None = None,
                     memory: int = MEMORY_LIMIT_BYTES, cpu: int = CPU_LIMIT_SECONDS) -> None:
    """Load `data` and predict one probe row in a limited child process; ArtifactError if the child refuses it,
    dies (a signal: memory, CPU, a crash in compiled code) or runs past WALL_LIMIT_SECONDS."""
    if fmt == "endpoint":
        return
    digest = hashlib.sha256(data)
    digest.update(repr((fmt, max_unpacked, n_features, memory, cpu)).encode())
    key = digest.digest()
    with _passed_lock:
        if key in _passed:
            _passed.move_to_end(key)
            return
    _check_in_child(data, fmt, max_unpacked=max_unpacked, n_features=n_features, memory=memory, cpu=cpu)
    with _passed_lock:
        _passed[key] = None
        while len(_passed) > PASSED_KEPT:
            _passed.popitem(last=False)


def _check_in_child(data: bytes, fmt: str, *, max_unpacked: int, n_features: int | None, memory: int, cpu: int) -> None:
    probe = np.zeros((1, n_features or 1))
    context = _process_context()
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(data, fmt, max_unpacked, probe, send, memory, cpu), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(WALL_LIMIT_SECONDS):
            child.kill()
            raise ArtifactError(f"loading the artifact took more than {WALL_LIMIT_SECONDS:.0f} s; it was refused")
        try:
            verdict, message = receive.recv()
        except EOFError:
            verdict, message = "died", ""
    finally:
        child.join(5)
        receive.close()
    if verdict == "died" or child.exitcode not in (0, None):
        code = child.exitcode
        cause = (f"signal {signal.Signals(-code).name}" if isinstance(code, int) and code < 0
                 else f"exit code {code}")
        raise ArtifactError(f"loading the artifact killed the process that tried it ({cause}): a crafted or broken "
                            "file; it was refused and nothing was loaded here")
    if verdict == "refused":
        raise ArtifactError(message)
