"""The web dashboard: ``reconciler serve``, and the same server inside ``run`` and ``operator``
(``--dashboard-port``).

It only reads the store (as ``reconciler get`` does, so it works while a loop runs) and writes an
approval through the store function ``reconciler approve`` uses, when approving is switched on
with a token. :mod:`.model` turns stored workflows into page models (pure), :mod:`.layout` places
a workflow's DAG, :mod:`.render` writes HTML and SVG, :mod:`.access` checks the token and
:mod:`.server` answers HTTP with the standard library's ``ThreadingHTTPServer``.
"""
