"""engine_stub: a deterministic fake engine (docs/architecture.md, "Engine protocol").

It behaves like alphacep/vosk-server's websocket/asr_server.py (vosk 0.3.45) where it
matters — one reply per audio frame, exactly `{"eof" : 1}` ends the session with the final
segment and close 1000, any other text closes 1011 — and is stricter where that catches
bugs (an odd-length audio frame closes 1011). Its text encodes what it received (byte count
and SHA-256 prefix, see `engine_stub.session`), except for audio found in the transcript
table (`engine_stub.transcripts`), which gets real sentences with word timings. Flags make
it misbehave on purpose (`engine_stub.config`, `engine_stub.faults`). docs/engine_stub.md
has the whole contract.
"""
