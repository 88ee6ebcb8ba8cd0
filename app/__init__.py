"""smokehouse: a self-hosted control plane for serverless-style workloads."""

__version__ = "0.1.0"
