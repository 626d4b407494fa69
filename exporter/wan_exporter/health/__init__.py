"""Health checks of Wan checkpoints in every form they take on disk: layout, headers, content hash, load.

Each check is a plain function that returns a frozen :class:`~wan_exporter.state.CheckResult`;
the subsystem runs them on schedules and puts the results in the store, the collector turns
the snapshot into metrics, and :mod:`.verdict` folds everything known about a model into
one status. Checks never raise for a broken model: a broken model is what they report.
"""
