"""Test only: a process started with this directory on ``PYTHONPATH`` makes light keystores.

Loads ``support/fast_kdf.py`` by its path (the child's ``sys.path`` does not hold ``tests/``)
and installs its parameters; see that module.
"""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_backchannel_fast_kdf", Path(__file__).resolve().parent.parent / "fast_kdf.py"
)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
_module.install()
