"""What every level of tests shares (and `bench/` with them): scaled timeouts and
`eventually()`, the process runner, the `/metrics` reader, async HTTP probes, audio."""
