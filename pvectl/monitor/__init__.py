"""Watching a cluster over time: one set of collectors behind ``pvectl watch`` and
``pvectl exporter``.

``model`` holds the frozen facts, ``derive`` the pure derivations (rates, failure margin,
split brain, events between two snapshots), ``cmap_stats`` the parser of corosync's
runtime statistics, ``sources`` the per-node readers (corosync tools, an embedded lab
node's counters, SSH) and ``collect`` the poll loop that keeps last known values when a
node stops answering.
"""
