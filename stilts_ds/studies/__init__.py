"""Studies: pipeline stages, scaling sweeps, and the study's results and reports.

Modules:

- ``results``: write a run's zero-shot scores as ``results.json`` with task scores and the
  XTREME average (``write_results``), render them as a Markdown table (``results_markdown``,
  ``write_markdown``) and read them back with a clear error (``load_results``).

Import the submodule you need (``from stilts_ds.studies.results import write_results``);
this package file imports nothing, so loading one study module never starts Ray or
DeepSpeed as a side effect.
"""
