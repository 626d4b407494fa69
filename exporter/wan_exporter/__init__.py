"""wan-exporter: Prometheus exporter for Wan video-generation models on NVIDIA GPUs."""

__version__ = "0.1.0"
DEFAULT_PORT = 9834
