"""The kikimimi engine: real recognition behind the engine protocol (docs/engines.md).

It speaks the protocol of vosk-server's `websocket/asr_server.py`, so the intermediate cannot
tell it from a Vosk engine. `protocol` holds the per-connection state machine (sans-I/O) and
`server` the thin WebSocket layer; behind `backend.Recognition` one of two recognisers runs:

- Whisper (`whisper`): `whisper_decoder` decodes utterances with CTranslate2, `vad` cuts the
  stream into utterances, `utterances` turns one session's decodes into replies,
  `agreement` holds partials stable, `scheduler` decides what to decode next across all
  sessions; `models` installs and checks the model files.
- pocketsphinx: `recognizer` turns a decoder and endpointer into partials and segments,
  `workers` runs them in worker processes (`decoding`).
"""
