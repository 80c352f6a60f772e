"""Generated gRPC stubs (`make proto`); never edit recognizer_pb2*.py by hand."""
