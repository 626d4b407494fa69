"""Benchmark generations: the child-process side (:mod:`.child`) and pure output checks (:mod:`.sanity`)."""
