"""How a long-running loop keeps Python's garbage collector off its critical path.

Called by ``reconciler run`` and ``reconciler operator`` once their start is done, right before
the loop's first tick. It guarantees that what the start built (modules, models and their
schemas) is never walked by a collection again, and that collections run far less often than
CPython's default; cyclic garbage is still collected.
"""

from __future__ import annotations

import gc

# A tick over 10,000 jobs allocates millions of short-lived objects. At CPython's default of a
# young collection every 700 allocations, the full collections those add up to walked every
# workflow's kept plans and decoded rows: a third of a steady tick's CPU over 200 workflows of
# 50 tasks (1.1 s against 0.8 s). Ten thousand cut that to nothing measurable, with the same
# peak RSS.
YOUNG_COLLECTION_EVERY = 10_000


def settle_for_the_loop() -> None:
    """Freeze what exists now and space the collections out (see the module's docstring)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)
