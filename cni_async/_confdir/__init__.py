"""A configuration directory over time: snapshots, their events, the watcher and their owner.

``snapshot`` (one validated generation, data only), ``build`` (making one with VERSION probes),
``events`` (what changed between two, and the hub that publishes it), ``watch`` (inotify as an
async iterator of events) and ``source`` (``ConfigSource``, the one owner of a plugin's snapshot,
generation counter, default name, reload lock and event hub).
"""
