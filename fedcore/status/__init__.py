"""The coordinator's live status: a snapshot of the round engine, its HTML page, its Prometheus
metrics, and the terminal view of ``status``.

- :mod:`~fedcore.status.snapshot`: one JSON-able dict of what the engine knows (read under its lock);
- :mod:`~fedcore.status.board`: a thread that keeps the newest snapshot and ``run_dir/status.json``;
- :mod:`~fedcore.status.page`: the HTML page and its inline SVG plot (pure functions of a snapshot);
- :mod:`~fedcore.status.metrics`: the ``/metrics`` exposition (``prometheus-client``);
- :mod:`~fedcore.status.server`: the stdlib HTTP(S) server behind ``[status] address``;
- :mod:`~fedcore.status.text` and :mod:`~fedcore.status.commands`: ``status`` and ``stop``.

Nothing here can change the federation except :mod:`fedcore.coordinator.control`'s stop request.
"""
