"""LanceDB's cheaper import: pydantic's settings come back, and the deferred checks still run when called.

Each test runs a fresh interpreter: in this one LanceDB is usually imported already, and then the loader's
path is never taken.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_pydantic_is_left_as_it_was_and_models_defined_after_build_at_once() -> None:
    out = run(
        "import pydantic\n"
        "real = pydantic.validate_call\n"
        "import memory.longterm.lancedb_loader as loader\n"
        "assert 'lance_namespace_urllib3_client' in __import__('sys').modules\n"
        "assert pydantic.validate_call is real\n"
        "assert 'defer_build' not in pydantic.BaseModel.model_config\n"
        "class After(pydantic.BaseModel):\n"
        "    n: int\n"
        "print(After.__pydantic_complete__, After(n='3').n)\n"
    )
    assert out == "True 3"


def test_a_deferred_validator_still_refuses_bad_arguments_when_called() -> None:
    # The generated REST client's methods were decorated while the import deferred their validators: the
    # first call builds one, and a wrong type is refused before any request is made, as without the loader.
    out = run(
        "import pydantic\n"
        "from memory.longterm.lancedb_loader import lancedb\n"
        "from lance_namespace_urllib3_client.api.table_api import TableApi\n"
        "from lance_namespace_urllib3_client.models import AlterTableAddColumnsRequest as Req\n"
        "print(Req.__pydantic_complete__)\n"
        "api = TableApi.__new__(TableApi)\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        api.alter_table_add_columns(id=123, alter_table_add_columns_request=None)\n"
        "    except pydantic.ValidationError as exc:\n"
        "        print(sorted({e['loc'][0] for e in exc.errors()}))\n"
        "print(Req.model_validate({'new_columns': []}).new_columns)\n"
    )
    assert out.splitlines() == ["False", "['alter_table_add_columns_request', 'id']",
                                "['alter_table_add_columns_request', 'id']", "[]"]


def test_the_import_is_undone_when_it_fails() -> None:
    # A LanceDB that fails to import (here: made to raise) leaves pydantic as it found it.
    out = run(
        "import sys, pydantic\n"
        "real = pydantic.validate_call\n"
        "sys.modules['lancedb'] = None  # makes `import lancedb` raise ImportError\n"
        "try:\n"
        "    import memory.longterm.lancedb_loader\n"
        "except ImportError:\n"
        "    print('raised')\n"
        "print(pydantic.validate_call is real, 'defer_build' in pydantic.BaseModel.model_config)\n"
    )
    assert out.splitlines() == ["raised", "True False"]
