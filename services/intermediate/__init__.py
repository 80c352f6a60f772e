"""The intermediate: pools engine connections, watches engine liveness, answers /readiness."""
