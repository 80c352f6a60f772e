"""The text messages a client of an engine sends (docs/architecture.md, "Engine protocol").

vosk-server compares the end-of-stream messages byte for byte: other spellings make it fail
and close with 1011, so every sender and every engine takes them from here.
"""

from __future__ import annotations

import json

# The final segment, then the engine closes 1000.
EOF_MESSAGE = '{"eof" : 1}'
# The final segment; the connection stays for more audio.
RESET_MESSAGE = '{"reset" : 1}'


def config_message(sample_rate: int, words: bool = True) -> str:
    """The config that must come before the first audio frame (a later one is ignored)."""
    return json.dumps({"config": {"sample_rate": sample_rate, "words": int(words)}})
