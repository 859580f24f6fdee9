"""loading.register_keras_objects imports every module that registers a Keras class."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import test_import_cycles as cycles  # noqa: E402  (the same import reader)


def test_every_registering_module_is_imported_before_loading():
    modules = cycles._modules()
    registering = {name for name, path in modules.items()
                   if "register_keras_serializable" in path.read_text(encoding="utf-8")}
    path = modules["kerastl.loading"]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef)
                    and node.name == "register_keras_objects")
    imported = set()
    for node in ast.walk(function):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= cycles._targets("kerastl.loading", path, node, modules)
    assert registering and registering <= imported, sorted(registering - imported)
