"""Records: every layout under ``.mlops/`` and every record written on the cluster.

One module per kind of record; nobody else builds a store path by hand.
"""
