"""Pure parts of the intermediate, without sockets: settings, backoff, slots, translation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.engine_messages import EOF_MESSAGE, config_message
from services.common.pb import recognizer_pb2 as pb
from services.intermediate.config import Settings
from services.intermediate.connections import Backoff
from services.intermediate.engine_protocol import EngineTranslator
from services.intermediate.errors import OUTCOMES, EngineProtocolError
from services.intermediate.pool import EngineState, EngineTarget, PoolSettings
from services.intermediate.server import validate_start
from tests.support.grpc_client import start_request

POOL = PoolSettings.of(Settings(idle_connections=2))


def test_engines_setting_is_a_comma_separated_list_of_websocket_urls() -> None:
    """INTERMEDIATE_ENGINES takes several ws:// URLs separated by commas."""
    settings = Settings(engines="ws://a:2700, ws://b:2700")  # type: ignore[arg-type]
    assert settings.engines == ["ws://a:2700", "ws://b:2700"]


def test_engines_setting_refuses_a_url_that_is_not_websocket() -> None:
    """An engine URL without ws:// or wss:// is a settings error that names it."""
    with pytest.raises(ValidationError, match="http://a:2700"):
        Settings(engines="http://a:2700")  # type: ignore[arg-type]


def test_default_timeouts_detect_a_hung_engine_within_10_seconds() -> None:
    """With the defaults, ping interval plus pong timeout is under 10 s."""
    settings = Settings()
    assert settings.ping_interval + settings.ping_timeout < 10
    assert settings.reply_timeout < 10


def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets() -> None:
    """Each delay lies in [d/2, d] for d = initial * 2^n, capped; reset starts over."""
    backoff = Backoff(0.2, 1.0)
    for d in (0.2, 0.4, 0.8, 1.0, 1.0):
        assert d / 2 <= backoff.next_delay() <= d
    backoff.reset()
    assert backoff.next_delay() <= 0.2


async def test_a_starting_engine_offers_no_free_slot() -> None:
    """Slots count as free only while the engine is up."""
    target = EngineTarget("ws://e", POOL, lambda: None)
    assert (target.state, target.free) == (EngineState.STARTING, 0)
    target.state = EngineState.UP
    target.busy = 3
    assert target.free == 1


async def test_warm_connections_never_push_the_engine_over_capacity() -> None:
    """The maintainer wants warm connections only while busy + warm stays within capacity."""
    target = EngineTarget("ws://e", POOL, lambda: None)
    target.state = EngineState.UP
    assert target._warm_wanted() == 2
    target.busy = 3
    assert target._warm_wanted() == 1
    target.opening = 1
    assert target._warm_wanted() == 0
    target.busy, target.opening = 4, 0
    assert target._warm_wanted() == 0


def test_start_must_come_first() -> None:
    """A session that does not begin with start is INVALID_ARGUMENT."""
    with pytest.raises(Exception, match="first message"):
        validate_start(pb.RecognizeRequest(audio=b"\0\0"))


def test_start_with_stereo_audio_is_refused() -> None:
    """Internal hops carry mono audio only."""
    request = start_request()
    request.start.audio.channels = 2
    with pytest.raises(Exception, match="mono"):
        validate_start(request)


def test_engine_config_and_eof_are_the_exact_vosk_messages() -> None:
    """The config names the engine's rate with words on; eof is exactly vosk's bytes."""
    assert config_message(8000) == '{"config": {"sample_rate": 8000, "words": 1}}'
    assert EOF_MESSAGE == '{"eof" : 1}'


def test_segment_word_times_become_milliseconds() -> None:
    """Word times in seconds become milliseconds, and segments tile the audio."""
    translator = EngineTranslator("en")
    response = translator.feed(
        '{"text": "hello", "result": [{"word": "hello", "start": 0.25, "end": 0.75, "conf": 1}]}'
    )
    assert (response.segment.start_ms, response.segment.end_ms) == (0, 750)
    assert (response.segment.words[0].start_ms, response.segment.words[0].end_ms) == (250, 750)
    assert translator.feed('{"partial": "more"}').partial.start_ms == 750


def test_non_json_reply_is_a_protocol_error() -> None:
    """Text that is not JSON from the engine is an engine protocol error (INTERNAL)."""
    with pytest.raises(EngineProtocolError, match="non-JSON"):
        EngineTranslator("ja").feed("}garbage{")


def test_every_outcome_label_is_known_in_advance() -> None:
    """Session outcomes are a fixed, small set of snake_case labels."""
    assert len(set(OUTCOMES)) == len(OUTCOMES)
    assert all(o.replace("_", "").isalpha() and o.islower() for o in OUTCOMES)
