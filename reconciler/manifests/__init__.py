"""From YAML to runnable workflows: loading with file and line errors (``loader``), template
instantiation (``templates``), the task graph (``dag``) and resolution (``resolve``). Pure."""
