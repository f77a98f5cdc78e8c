"""The loop at work: the tick (``controller``) and the executor that carries a plan out against a
cluster and records it in the store (``executor``)."""
