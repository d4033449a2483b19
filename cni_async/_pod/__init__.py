"""ocicni's role: pods on their networks, one lock per pod, many pods at once.

``plugin`` (``CNIPlugin``, the facade: lifecycle and the public methods), ``context`` (what
every pod operation shares: engine, configuration, cache, locks, intents), ``planning`` (which
networks, interface names and per-call parameters), ``setup``, ``teardown``, ``status`` and
``gc`` (one operation each), ``namespaces`` (the protocol the pod logic uses for network
namespaces) and ``netns`` (its netlink implementation), ``models`` (``PodNetwork`` and
friends), ``locks`` and ``blocking`` (the facade for code without an event loop).
"""
