"""The pocketsphinx engine: a real English recogniser behind the engine protocol
(docs/architecture.md, "Engine protocol").

It speaks the protocol of vosk-server's `websocket/asr_server.py`, so the intermediate cannot
tell it from a Vosk engine. `protocol` holds the per-connection state machine (sans-I/O),
`recognizer` turns a pocketsphinx decoder and endpointer into partials and determined
segments, `workers` runs the recognisers in worker processes, and `server` is the thin
WebSocket layer.
"""
