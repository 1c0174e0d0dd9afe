"""The package structure the README describes ("How it fits together"), checked on the source:
the packages import each other in one direction only, golden and hw never load torch, train
never loads Amaranth or cocotb, imports sit at the top of modules, and modules and functions
stay readable in size."""
import ast
import subprocess
import sys

import pytest

from conftest import ROOT

# Each package may import only packages before it (a layering, so no cycle is possible).
LAYERS = ("project_config", "train", "model_export", "golden", "hw", "efficiency", "sim",
          "benchmarks", "reports")
SIZE_EXEMPT_MODULES = {"hw/core.py"}          # the dense-lanes work splits it into units
SIZE_EXEMPT_FUNCTIONS = {"hw/core.py:elaborate"}
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_FUNCTION_IMPORTS = 500, 100, 15


def _modules():
    for pkg in LAYERS:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield pkg, path.relative_to(ROOT).as_posix(), path.read_text()


def _imported_packages(tree) -> set:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
    return out & set(LAYERS)


def _function_imports(tree):
    """(function, import node) for every import inside a function body."""
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield fn, node


def test_packages_import_in_one_direction_only():
    wrong = []
    for pkg, rel, src in _modules():
        for other in _imported_packages(ast.parse(src)) - {pkg}:
            if LAYERS.index(other) > LAYERS.index(pkg):
                wrong.append(f"{rel} imports {other}")
    assert not wrong, "imports against the layering " + " < ".join(LAYERS) + ":\n" + "\n".join(wrong)


def test_the_import_scan_sees_both_import_forms():
    tree = ast.parse("import sim.host\nfrom reports import efficiency\n")
    assert _imported_packages(tree) == {"sim", "reports"}


def _loaded_by(modules: list) -> set:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       check=True)
    return set(r.stdout.split())


def test_golden_and_hw_never_load_torch():
    loaded = _loaded_by(["golden", "golden.__main__", "hw.build", "hw.core", "hw.protocol",
                         "hw.memory_image", "hw.memory_report", "model_export.format",
                         "model_export.random_net", "sim.host"])
    assert "torch" not in loaded


def test_train_never_loads_amaranth_or_cocotb():
    modules = [p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
               for p in sorted((ROOT / "train").glob("*.py"))]
    loaded = _loaded_by([m for m in modules if not m.endswith("__main__")] + ["train.__main__"])
    assert not loaded & {"amaranth", "cocotb", "cocotb_tools", "hw", "sim", "golden"}


def test_function_level_imports_are_few_and_explained():
    found, unexplained = [], []
    for _, rel, src in _modules():
        lines = src.splitlines()
        for fn, node in _function_imports(ast.parse(src)):
            found.append(f"{rel}:{node.lineno} ({fn.name})")
            here, above = lines[node.lineno - 1], lines[node.lineno - 2]
            if "#" not in here and not above.strip().startswith("#"):
                unexplained.append(found[-1])
    assert len(found) < MAX_FUNCTION_IMPORTS, "\n".join(found)
    assert not unexplained, "function-level imports without a reason comment:\n" + "\n".join(unexplained)


@pytest.mark.parametrize("limit", ["module", "function"])
def test_modules_and_functions_stay_readable(limit):
    too_long = []
    for _, rel, src in _modules():
        if limit == "module":
            n = len(src.splitlines())
            if n > MAX_MODULE_LINES and rel not in SIZE_EXEMPT_MODULES:
                too_long.append(f"{rel}: {n} lines")
            continue
        for fn in ast.walk(ast.parse(src)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = fn.end_lineno - fn.lineno + 1
                if n > MAX_FUNCTION_LINES and f"{rel}:{fn.name}" not in SIZE_EXEMPT_FUNCTIONS:
                    too_long.append(f"{rel}:{fn.name}: {n} lines")
    assert not too_long, "\n".join(too_long)


def test_one_geometry_class_and_one_word_packer():
    """Layer geometry is defined once (project_config.geometry) and stream words are packed in
    one module (hw.protocol): no other module defines a geometry dataclass or packs fields."""
    offenders = []
    for _, rel, src in _modules():
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and rel != "project_config/geometry.py":
                fields = {t.target.id for t in node.body
                          if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)}
                if {"in_channels", "out_height", "kernel"} <= fields:
                    offenders.append(f"{rel}: class {node.name} redefines layer geometry")
            if (isinstance(node, ast.FunctionDef) and node.name in ("pack_fields", "param_transfers",
                                                                    "memory_fields")
                    and rel != "hw/protocol.py"):
                offenders.append(f"{rel}: {node.name} packs stream words outside hw.protocol")
    assert not offenders, "\n".join(offenders)
