"""The operator's tools: `kikimimi-kube` (a kubectl pinned to one environment) and
`kikimimi-models` (versioned, immutable engine models). docs/operations.md is the manual."""
