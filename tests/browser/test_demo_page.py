"""The demo page as a user meets it: in Chromium, a fake microphone playing speech, a file
picker, refusals shown as the server sent them, and a screenshot of each."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import httpx
import jiwer
import numpy as np
import pytest
import soundfile
from playwright.sync_api import Page

from tests.browser.conftest import SHORT_SESSION_S, TOKEN, Servers, Tab, wait_for
from tests.support.audio import FIXTURES
from tests.system.engine.engine_helpers import speak

pytestmark = pytest.mark.slow

RATE = 16000
LEAD_SILENCE_S = 0.5
TAIL_SILENCE_S = 4.0
ENGLISH = "please open the window and turn off the lights in the kitchen"
MAX_WER = 0.35  # a real recogniser on synthetic speech, as the engine tests allow
SHOWN_WITHIN_S = 2.0  # the "within two seconds of the end of speech"
SESSION_TIMEOUT_MS = 30_000


def write_wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)
    return path


def last_sound_s(pcm: bytes, threshold: int = 500) -> float:
    """Where the last 10 ms window louder than `threshold` (about -36 dBFS) ends: flite's
    WAV ends in a short silence of its own, which is not speech."""
    window = RATE // 100
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    loud = [i for i in range(0, len(samples), window) if samples[i : i + window].max() > threshold]
    return (loud[-1] + window) / RATE


def choose(page: Page, process: str, language: str, token: str = "") -> None:
    page.select_option("#process", process)
    page.fill("#language", language)
    if process == "nict-asr":
        page.select_option("#format", "v2")
        page.check("#progressive")
        page.check("#temporary")
        page.fill("#interval", "500")
    page.fill("#token", token)


def wait_ended(page: Page) -> str:
    """The state the session ended in: `done` after recog-finished and 1000, or why not."""
    page.wait_for_selector(
        "#state[data-state=done], #state[data-state=failed]", timeout=SESSION_TIMEOUT_MS
    )
    return page.inner_text("#state")


def shown_text(page: Page, separator: str) -> str:
    texts: list[str] = page.eval_on_selector_all(
        "#utterances li", "items => items.map(i => i.dataset.text)"
    )
    return separator.join(texts)


def message_log(page: Page) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = page.eval_on_selector_all(
        "#log li",
        "items => items.map(i => ({kind: i.dataset.kind, t: +i.dataset.t,"
        " audio: +i.dataset.audio, text: i.textContent}))",
    )
    return entries


def assert_temporary_first(log: list[dict[str, Any]]) -> None:
    kinds = [entry["kind"] for entry in log]
    assert "temporary" in kinds, kinds
    first_result = next(k for k in kinds if k in ("temporary", "determined", "finished"))
    assert first_result == "temporary", kinds


def test_microphone_english_shows_the_sentence_soon_after_speech(
    servers: Servers, open_page: Any, tmp_path: Path
) -> None:
    speech = speak(ENGLISH, "rms", tmp_path)
    speech_end_s = LEAD_SILENCE_S + last_sound_s(speech)
    assert len(speech) / (2 * RATE) - 0.5 < last_sound_s(speech)  # found the speech's end
    silence = bytes(2 * RATE)
    wav = write_wav(
        tmp_path / "speech.wav",
        silence[: int(LEAD_SILENCE_S * RATE) * 2] + speech + silence * int(TAIL_SILENCE_S),
    )
    tab: Tab = open_page(f"{servers.open}/demo/", wav)
    page = tab.page
    choose(page, "nict-asr", "en")
    page.click("#mic")
    page.wait_for_selector("#temporary-text:not(:empty)", timeout=SESSION_TIMEOUT_MS)
    tab.screenshot("demo-microphone-en-temporary")
    # A user presses Stop half a second after they stop speaking (the page's audio clock
    # counts the fake microphone's samples).
    wait_for(
        page,
        f"parseFloat(document.querySelector('#clock').textContent) >= {speech_end_s + 0.5}",
        SESSION_TIMEOUT_MS / 1000,
    )
    page.click("#stop")
    assert wait_ended(page) == "done", page.inner_text("#error")
    tab.screenshot("demo-microphone-en")

    text = shown_text(page, " ")
    assert jiwer.wer(ENGLISH, text.lower()) <= MAX_WER, text
    log = message_log(page)
    assert_temporary_first(log)
    determined_at = page.eval_on_selector_all(
        "#utterances li", "items => items.map(i => +i.dataset.determined)"
    )
    delay = max(determined_at) - speech_end_s
    print(f"speech ends at {speech_end_s:.2f} s; sentence shown {delay:.2f} s later; log:", end=" ")
    print([entry["kind"] for entry in log])
    assert delay <= SHOWN_WITHIN_S, (delay, log)
    assert page.inner_text("#temporary-text") == ""  # no temporary words left over
    # The meter moved with the speech (-60..0 dBFS on 0..1; flite speaks near -20 dBFS).
    assert float(page.get_attribute("#level", "data-peak") or 0) > 0.4
    assert not tab.problems, tab.problems


def japanese_file(kind: str, directory: Path) -> Path:
    """The Japanese fixture as the file picker gets it: raw, or the same samples in WAV or
    FLAC (lossless, so engine_stub still recognises the exact audio)."""
    raw = FIXTURES / "ja-chotto-osoi-chushoku.raw"
    if kind == "raw":
        return raw
    samples = np.frombuffer(raw.read_bytes(), dtype="<i2")
    path = directory / f"ja-chotto-osoi-chushoku.{kind}"
    soundfile.write(path, samples, RATE, subtype="PCM_16", format=kind.upper())
    return path


@pytest.mark.parametrize("kind", ["raw", "wav", "flac"])
def test_file_picker_japanese_shows_its_sentence(
    servers: Servers, open_page: Any, tmp_path: Path, kind: str
) -> None:
    tab: Tab = open_page(f"{servers.open}/demo/")
    page = tab.page
    choose(page, "nict-asr", "ja")
    page.set_input_files("#file", str(japanese_file(kind, tmp_path)))
    page.click("#stream-file")
    assert wait_ended(page) == "done", page.inner_text("#error")
    tab.screenshot(f"demo-file-ja-{kind}")
    media = "audio/x-flac" if kind == "flac" else "audio/x-pcm"
    opened = page.text_content("#log li[data-kind=open]") or ""
    assert opened.endswith(f"sending {media};bit=16;rate=16000;channels=1"), opened

    # engine_stub's transcript of the fixture: its three determined segments, in order.
    assert page.eval_on_selector_all(
        "#utterances li", "items => items.map(i => i.dataset.text)"
    ) == ["ちょっと遅い昼食", "をとるためファミリーレストランに入っ", "たのです。"]
    log = message_log(page)
    assert_temporary_first(log)
    finished = [e for e in log if e["kind"] == "finished"]
    assert len(finished) == 1
    # Streamed at real time: the fixture's 6.3 s of audio take about that long to send.
    audio_s = (FIXTURES / "ja-chotto-osoi-chushoku.raw").stat().st_size / (2 * RATE)
    assert finished[0]["t"] >= (audio_s - 0.5) * 1000, finished
    assert not tab.problems, tab.problems


@pytest.mark.parametrize(("process", "response_format"), [("nict-asr", "v1"), ("asr", "")])
def test_the_other_result_formats_show_the_same_text(
    servers: Servers, open_page: Any, process: str, response_format: str
) -> None:
    """v1's morpheme lines and asr's words, as the server's own answer for the fixture has
    them (asked directly with POST /)."""
    raw = (FIXTURES / "ja-chotto-osoi-chushoku.raw").read_bytes()
    params = {"process": process, "input-language": "ja"}
    if response_format:
        params["nict-asr-options"] = f"response_format={response_format}"
    final = httpx.post(servers.open + "/", params=params, content=raw, timeout=30).json()
    words = [entry["result"].split("|")[0] for entry in final["response"]]
    expected = "".join(word for word in words if word)

    tab: Tab = open_page(f"{servers.open}/demo/")
    page = tab.page
    choose(page, process, "ja")
    if response_format:
        page.select_option("#format", response_format)
    page.set_input_files("#file", str(FIXTURES / "ja-chotto-osoi-chushoku.raw"))
    page.click("#stream-file")
    assert wait_ended(page) == "done", page.inner_text("#error")
    assert expected.startswith("ちょっと遅い昼食")
    assert shown_text(page, "") == expected
    assert not tab.problems, tab.problems


def _post_refusal(url: str, params: dict[str, str], token: str = "") -> dict[str, Any]:
    """What the server itself answers these parameters, asked directly."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(url + "/", params=params, headers=headers, content=b"", timeout=10)
    assert response.status_code >= 400
    return {"status": response.status_code, **response.json()["error"]}


def test_unknown_language_shows_the_servers_400(servers: Servers, open_page: Any) -> None:
    tab: Tab = open_page(f"{servers.open}/demo/")
    page = tab.page
    choose(page, "nict-asr", "xx")
    page.click("#mic")
    assert wait_ended(page) == "refused"
    page.wait_for_selector("#error[data-status]")
    tab.screenshot("demo-refused-language")

    expected = _post_refusal(servers.open, {"process": "nict-asr", "input-language": "xx"})
    assert expected["status"] == 400
    assert page.inner_text("#error-code") == f"400 {expected['code']}"
    assert page.inner_text("#error-message") == expected["message"]
    assert "supported: en, ja" in expected["message"]


def test_bad_token_shows_the_servers_401_and_the_token_stays_out_of_the_url(
    servers: Servers, open_page: Any
) -> None:
    tab: Tab = open_page(f"{servers.tokens}/demo/")
    page = tab.page
    choose(page, "nict-asr", "ja", token="not-the-token")
    page.set_input_files("#file", str(FIXTURES / "ja-chotto-osoi-chushoku.raw"))
    page.click("#stream-file")
    assert wait_ended(page) == "refused"
    page.wait_for_selector("#error[data-status]")
    tab.screenshot("demo-refused-token")

    expected = _post_refusal(
        servers.tokens, {"process": "nict-asr", "input-language": "ja"}, "not-the-token"
    )
    assert expected["status"] == 401
    assert page.inner_text("#error-code") == f"401 {expected['code']}"
    assert page.inner_text("#error-message") == expected["message"]
    assert "not-the-token" not in page.url
    assert page.evaluate("JSON.stringify(localStorage)") == "{}"

    # With the right token and "remember" ticked, the session runs and the token is kept.
    page.fill("#token", TOKEN)
    page.check("#remember")
    page.click("#stream-file")
    assert wait_ended(page) == "done", page.inner_text("#error")
    assert TOKEN not in page.url
    assert page.evaluate("localStorage.getItem('kikimimi-demo-token')") == TOKEN
    page.uncheck("#remember")
    assert page.evaluate("localStorage.getItem('kikimimi-demo-token')") is None


def test_an_error_after_the_upgrade_shows_the_servers_message(
    servers: Servers, open_page: Any
) -> None:
    tab: Tab = open_page(f"{servers.short}/demo/")
    page = tab.page
    choose(page, "nict-asr", "ja")
    page.set_input_files("#file", str(FIXTURES / "ja-chotto-osoi-chushoku.raw"))
    page.click("#stream-file")
    assert wait_ended(page) == "closed 1008"
    tab.screenshot("demo-session-error")

    errors = [e for e in message_log(page) if e["kind"] == "error"]
    assert len(errors) == 1
    sent = json.loads(errors[0]["text"].split("  ", 1)[1])  # the message as it arrived
    assert sent["error"]["code"] == "session_too_long"
    assert page.inner_text("#error-code") == sent["error"]["code"]
    assert page.inner_text("#error-message") == sent["error"]["message"]
    assert f"{SHORT_SESSION_S} s" in sent["error"]["message"]
    assert page.inner_text("#error-detail") == f"session {sent['session_id']}"
    assert page.inner_text("#temporary-text") == ""
