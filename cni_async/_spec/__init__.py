"""The CNI specification as data: versions, results, names and network configuration.

Nothing here runs a plugin or touches the disk beyond reading one file: ``versions`` (spec
versions and their order), ``results`` (the typed result of every version and conversion between
them), ``validation`` (names, IDs and arguments, checked as libcni checks them) and ``netconf``
(network configuration files parsed, and the stdin each plugin of a chain is given).
"""
