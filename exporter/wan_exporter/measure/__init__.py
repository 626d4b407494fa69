"""Measuring code shared by the benchmark child and the traffic hook: phases, sanity, FLOPs."""
