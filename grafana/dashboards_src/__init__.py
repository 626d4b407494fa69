"""Grafana dashboards for wan-exporter, written with grafana-foundation-sdk.

Regenerate the committed JSON from the repository root with::

    python3 -m grafana.dashboards_src

``main`` assembles the four dashboards, one module per dashboard lays out panels,
``common`` holds the panel defaults and shared pieces, ``queries`` holds every PromQL
expression (layout never spells PromQL itself).
"""
