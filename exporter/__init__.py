"""chargeback: Kubernetes cost attribution from the metrics Prometheus already has."""

__version__ = "0.1.0"
