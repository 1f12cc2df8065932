"""Prints the Alembic revisions Langflow ships (head first) as JSON, without importing Langflow.

Run by the harness (bundle import) with the Langflow venv's interpreter or in the Langflow image,
to tell an older tenant schema (migrate it) from a newer one (refuse it).
"""
import importlib.util
import json
import os

from alembic.config import Config
from alembic.script import ScriptDirectory

base = os.path.dirname(importlib.util.find_spec("langflow").origin)
config = Config(os.path.join(base, "alembic.ini"))
config.set_main_option("script_location", os.path.join(base, "alembic"))
script = ScriptDirectory.from_config(config)
print(json.dumps({"heads": list(script.get_heads()), "revisions": [r.revision for r in script.walk_revisions()]}))
