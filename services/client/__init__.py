"""A command-line client: streams an audio file to a kikimimi (or mimi) endpoint."""
