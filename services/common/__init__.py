"""Code shared by every kikimimi service: generated gRPC stubs, settings, logging."""
