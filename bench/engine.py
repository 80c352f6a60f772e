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
import json
import os
import random
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench.engine_procs import (
    ENGINES,
    Engine,
    ModelUnavailable,
    PeakMemory,
    cpu_seconds,
    memory_mib,
    spy,
    start,
)
from bench.profile import top_functions
from services.common.audio import PCM_BYTES_PER_SECOND, SAMPLE_RATE
from services.common.engine_messages import config_message
from tests.support import speech
from tests.support.processes import ROOT, Service

RESULTS = Path(__file__).resolve().parent / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "ja-chotto-osoi-chushoku"
FRAME = 3200  # 100 ms of 16 kHz s16le
LEAD = 1.0  # seconds of silence before the first sentence of a capacity session
GAP = 1.0  # between sentences
BOUND = 2.0  # final latency p95 of a real-time session, seconds
EOF = '{"eof" : 1}'


@dataclass(frozen=True)
class Clip:
    name: str
    language: str
    reference: str
    pcm: bytes

    @property
    def seconds(self) -> float:
        return len(self.pcm) / PCM_BYTES_PER_SECOND


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
        async with asyncio.timeout(120 + 3 * len(pcm) / PCM_BYTES_PER_SECOND):
            async with connect(url, open_timeout=30, max_size=2**20) as ws:
                await ws.send(config_message(SAMPLE_RATE))
                began = loop.time()
                frames = [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]

                async def send() -> None:
                    for i, frame in enumerate(frames):
                        if realtime:
                            due = began + (i + 1) * FRAME / PCM_BYTES_PER_SECOND
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
    audio = sum(len(pcm) for pcm, _ in lists) / PCM_BYTES_PER_SECOND
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
                        shown = spied.relative_to(ROOT) if spied.is_relative_to(ROOT) else spied
                        step["profile"] = {"file": str(shown), "self": own}
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
