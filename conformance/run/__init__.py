"""The run and its report: what one ``ncspec check`` (or ``pytest`` with the plugin) does between the adapter and the
claims' table.

:mod:`.session` (adapter, profile, seed, tier), :mod:`.deep_tier` (the deep tier's scales, data and budget),
:mod:`.recorder` (the ``record`` rows), :mod:`.coverage` (builds and steps per claim), :mod:`.xfail` (expected
failures), :mod:`.scheduling` (pytest-xdist groups), :mod:`.results` and :mod:`.progress` (per-test outcomes),
:mod:`.failures` (a claim's assertion or a crash, and the message), :mod:`.report` and :mod:`.report_doc` (JSON,
the table, the readable report), :mod:`.distributed_check` (D1's processes). Nothing here imports the mutant zoo
(:mod:`ncspec.conformance.mutants`)."""
