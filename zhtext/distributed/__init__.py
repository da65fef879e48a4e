"""Running zhtext's jobs on a Ray cluster: discover and pipe, with the results of a local run.

The per-block work stays in the library's engine-free functions (counting a block into a table,
routing a block, running a model over a batch); this package only schedules them on Ray.
"""
