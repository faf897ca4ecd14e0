"""The demo and its tooling: a synthetic cluster, a local Prometheus, `make demo`. Not part of the wheel."""
