"""libcni's role: the CNI verbs over plugin chains, for one network at a time.

``runtime`` (the per-call parameters and timeouts), ``observing`` (the hook around each plugin
process), ``exec`` (finding, running and reaping one plugin), ``runner`` (one observed, timed
plugin run), ``queuethread`` (a daemon thread fed by a queue), ``spawner`` (the thread that runs
every plugin from its spawn to its reap), ``native`` (the same thread in C, where the build
compiled ``_spawnloop.c``), ``groupcommit`` (batched durable writes), ``freeing``
(removed files freed on a thread of their own), ``cache`` (libcni's on-disk result cache and the
intent records), ``engine`` (ADD, CHECK, DEL, STATUS, GC and VERSION over a chain) and
``confload`` (reading a configuration directory). Imports only ``_spec`` and the ground modules
beside this package.
"""
