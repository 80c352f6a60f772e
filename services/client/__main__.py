"""kikimimi-client: stream a raw PCM or WAV file and print every JSON message received.

    python -m services.client tests/fixtures/ja-chotto-osoi-chushoku.raw \\
        --process nict-asr --language ja \\
        --options "response_format=v2;progressive=true;temporary=true"

Exit status: 0 when the session ends with recog-finished and close 1000, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import wave
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.common.audio import BYTES_PER_SAMPLE, PCM_BYTES_PER_SECOND, SAMPLE_RATE

RECOG_BREAK = json.dumps({"command": "recog-break"})


def load_audio(path: Path, rate: int, channels: int) -> tuple[bytes, str]:
    """The file's PCM bytes and its mimi content type (WAV headers win over the flags)."""
    if path.suffix.lower() == ".wav":
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise SystemExit(f"{path}: only 16-bit WAV is supported")
            rate, channels = wav.getframerate(), wav.getnchannels()
            data = wav.readframes(wav.getnframes())
    else:
        data = path.read_bytes()
    return data, f"audio/x-pcm;bit=16;rate={rate};channels={channels}"


async def stream(args: argparse.Namespace) -> int:
    audio, content_type = load_audio(args.file, args.rate, args.channels)
    headers = {
        "x-mimi-process": args.process,
        "x-mimi-input-language": args.language,
        "Content-Type": content_type,
    }
    if args.options:
        headers["x-mimi-nict-asr-options"] = args.options
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    bytes_per_second = (
        int(content_type.split("rate=")[1].split(";")[0]) * BYTES_PER_SAMPLE * args.channels
    )
    try:
        async with connect(args.url, additional_headers=headers, open_timeout=30) as ws:

            async def send() -> None:
                began = time.monotonic()
                for offset in range(0, len(audio), args.frame_bytes):
                    await ws.send(audio[offset : offset + args.frame_bytes])
                    if args.realtime:
                        due = began + (offset + args.frame_bytes) / bytes_per_second
                        await asyncio.sleep(max(0.0, due - time.monotonic()))
                await ws.send(RECOG_BREAK)

            sender = asyncio.create_task(send())
            finished = False
            try:
                async for message in ws:
                    print(message, flush=True)
                    if json.loads(message).get("status") == "recog-finished":
                        finished = True
            except ConnectionClosed:
                pass
            finally:
                sender.cancel()
            code = ws.close_code
            print(f"# closed with {code} {ws.close_reason or ''}".rstrip(), file=sys.stderr)
            return 0 if finished and code == 1000 else 1
    except InvalidStatus as exc:
        body = exc.response.body.decode(errors="replace") if exc.response.body else ""
        print(f"# refused: HTTP {exc.response.status_code} {body}", file=sys.stderr)
        return 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="kikimimi-client", description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path, help="raw s16le PCM or a 16-bit WAV file")
    parser.add_argument("--url", default="ws://127.0.0.1:8080/")
    parser.add_argument("--process", default="nict-asr", help="asr or nict-asr")
    parser.add_argument("--language", default="ja")
    parser.add_argument("--rate", type=int, default=SAMPLE_RATE, help="sample rate of a raw file")
    parser.add_argument("--channels", type=int, default=1, help="channels of a raw file")
    parser.add_argument("--options", default="", help="x-mimi-nict-asr-options")
    parser.add_argument("--token", default="", help="access token (Authorization: Bearer)")
    parser.add_argument(
        "--frame-bytes", type=int, default=PCM_BYTES_PER_SECOND // 10, help="bytes per audio frame"
    )
    parser.add_argument(
        "--realtime", action="store_true", help="pace the audio in real time, as a microphone"
    )
    raise SystemExit(asyncio.run(stream(parser.parse_args())))


if __name__ == "__main__":
    main()
