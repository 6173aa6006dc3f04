"""SOP scenarios: a folder with a written procedure, tool specs and a task table -> a scenario.

This is the SOP-Bench family of environments: the agent reads a long standard operating
procedure, calls lookup tools and returns a decision. One folder per domain::

    sop.txt                      the procedure, in prose (becomes the system prompt)
    toolspecs.json               Bedrock tool specs [{"toolSpec": {...}}] or OpenAI tool list
    test_set_with_outputs.csv    one row per task: inputs, tool values, gold outputs
    metadata.json                {"input_columns": [...], "output_columns": [...]}
    simenv.yaml                  which columns each tool looks up and returns; how to answer

:func:`load_sop` reads and checks the folder and builds a :class:`~simenv.scenario.Scenario`:

- **Tools** are recorded replay keyed by their inputs: a call's key arguments select the row
  whose key columns hold those values (the task's own row first) and the tool returns that row's
  mapped columns. Arguments are validated against the spec's JSON Schema first; an unknown key
  is answered like a real API's not-found error, without hinting at keys that exist.
- **Write tools** (``effect: write`` in ``simenv.yaml``) record their arguments in a seeded
  per-episode state; the CSV column named by ``expect`` holds the call the procedure requires
  (a JSON object of arguments) or nothing when the tool must not be called.
- **The decision** is a JSON object in the last assistant message, or the arguments of a
  ``submit`` tool (``answer:`` in ``simenv.yaml`` picks one or allows either).
- **Evaluation** is all-or-nothing: every output field equal to the gold after
  :func:`normalise`, and every write tool called exactly as expected (checked on the final
  state). **Reward** gives partial credit: the fraction of fields (and write tools) right,
  0 without a decision.
- **Oracle**: calls every lookup tool with the row's keys, makes the expected writes, and answers
  with the gold outputs, so ``simenv check`` proves oracle 1.0 and null 0.

A broken folder raises :class:`~simenv.errors.ScenarioError` naming the file and the fix. See
``docs/sop.md`` for the format in full.
"""

# Re-exported from the modules that define them. `X as X`: public names of the former single
# module that are not in __all__, still importable from here. Importing and self-testing a
# folder need the registry and the environment, which sit above this package:
# simenv.registration.import_sop and simenv.checks.sop.self_test.
from simenv.sop.build import SopState, is_sop_folder, load_sop
from simenv.sop.build import SopTool as SopTool
from simenv.sop.build import build_scenario as build_scenario
from simenv.sop.folder import MAPPING_FILE, SopFolder, read_folder
from simenv.sop.grading import NULL_LIKES, normalise, parse_decision
from simenv.sop.grading import SUBMIT as SUBMIT
from simenv.sop.grading import CallRecord as CallRecord
from simenv.sop.grading import schema_problems as schema_problems
from simenv.sop.index import INDEX_FILE as INDEX_FILE
from simenv.sop.index import find_imported, imported_scenarios, remember
from simenv.sop.metrics import constant_answer_rate, sop_metrics
from simenv.sop.toolspecs import ToolMap as ToolMap

__all__ = [
    "MAPPING_FILE",
    "NULL_LIKES",
    "SopFolder",
    "SopState",
    "constant_answer_rate",
    "find_imported",
    "imported_scenarios",
    "is_sop_folder",
    "load_sop",
    "normalise",
    "parse_decision",
    "read_folder",
    "remember",
    "sop_metrics",
]
