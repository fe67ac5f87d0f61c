"""The import rule of docs/design.md ("Layout: layers and the import rule"), checked on the source:
a module of the package imports only from its own sub-package and from the layers below it."""
from __future__ import annotations

import ast
from pathlib import Path

import mtlat_edu

PACKAGE = Path(mtlat_edu.__file__).parent
LAYERS = {"core": 0, "data": 1, "models": 1, "paper": 2, "robustness": 2, "training": 3, "benchmark": 4,
          "course": 5, "cli": 6, "__main__": 7}
SIDEWAYS = {("robustness", "paper")}  # the evaluation attacks share the paper's input gradient


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def package_imports(path: Path):
    """``(importing module, imported module, line, inside a function)`` for every import of the package in ``path``."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)[:-1] if rel.name == "__init__" else list(rel.parts)
    module = ".".join(parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if target == "mtlat_edu" else [target]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("mtlat_edu."):
                yield module, name, node.lineno, id(node) in nested


def _all_imports():
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in package_imports(path)]


def test_every_module_belongs_to_a_layer():
    units = {_unit(m) for m, *_ in _all_imports()} | {_unit(t) for _, t, *_ in _all_imports()}
    assert units - {None} <= set(LAYERS), units - set(LAYERS)


def upward(imports) -> list[str]:
    """The imports that break the rule, as messages."""
    bad = []
    for module, target, line, _ in imports:
        src, dst = _unit(module), _unit(target)
        if src and dst and src != dst and not (LAYERS[dst] < LAYERS[src] or (src, dst) in SIDEWAYS):
            bad.append(f"{module} (line {line}) imports {target}: layer {LAYERS[src]} -> {LAYERS[dst]}")
    return bad


def test_no_module_imports_a_higher_layer():
    bad = upward(_all_imports())
    assert not bad, "\n".join(bad)


def test_package_imports_sit_at_the_top_of_their_module():
    hidden = [f"{m} (line {line}) imports {t} inside a function" for m, t, line, inner in _all_imports() if inner]
    assert not hidden, "\n".join(hidden)


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a paper module importing the benchmark (inside a function) is reported,
    its import of core is not."""
    fake = tmp_path / "mtlat_edu"
    (fake / "paper").mkdir(parents=True)
    (fake / "paper" / "bad.py").write_text("from mtlat_edu.core import io\n\ndef f():\n"
                                           "    from ..benchmark import suite\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    found = list(package_imports(fake / "paper" / "bad.py"))
    assert [(m, t, inner) for m, t, _, inner in found] == [
        ("mtlat_edu.paper.bad", "mtlat_edu.core", False), ("mtlat_edu.paper.bad", "mtlat_edu.benchmark", True)]
    assert upward(found) == ["mtlat_edu.paper.bad (line 4) imports mtlat_edu.benchmark: layer 2 -> 4"]


def test_every_package_import_names_a_module_that_exists():
    """A relative import that climbs out of its sub-package (``from ..checks import``) after a module
    moved would name a module that no longer exists; this finds it without running the code."""
    import importlib.util
    missing = []
    for module, target, line, _ in _all_imports():
        if importlib.util.find_spec(target) is None:
            missing.append(f"{module} (line {line}) imports {target}")
    assert not missing, "\n".join(missing)
