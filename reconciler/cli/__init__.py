"""The ``reconciler`` command line: argument parsing (``main``), the store-backed commands
(``commands``), what they print (``output``) and ``reconciler submit`` (``submit``)."""
