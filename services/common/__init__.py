"""Code shared by every kikimimi process: lifecycle and drain, settings, logging, tracing,
the internal protocol's stubs, gRPC options, and the wire vocabulary (audio, engine messages).
docs/architecture.md ("Where is each concern") names the module of each."""
