"""Kubernetes: the kubelet's pod-resources API (which GPUs serving pods hold) and Job-mode probes."""
