"""The house rules on imports: they run one way, with no cycles, and ``import segcam`` stays light.

apps → evaluation / viz / interop → explainer, explanation → methods → core → foundation
(errors, checks, spatial); models and data stand beside the engine and never import it.  Every
import counts, including those inside functions.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import segcam

ROOT = Path(segcam.__file__).parent
FOUNDATION = {"foundation"}
ALLOWED = {  # layer → layers it may import (besides itself)
    "foundation": set(),
    "core": FOUNDATION,
    "methods": FOUNDATION | {"core"},
    "engine": FOUNDATION | {"core", "methods"},
    "data": FOUNDATION,
    "models": FOUNDATION | {"data"},
    "evaluation": FOUNDATION | {"core", "methods", "engine", "models", "data"},
    "viz": FOUNDATION | {"data"},
    "interop": FOUNDATION | {"core", "methods", "engine"},
    "apps": FOUNDATION | {"core", "methods", "engine", "models", "data", "evaluation", "viz", "interop", "root"},
    "root": FOUNDATION,  # and everything else lazily, by name
}
PUBLIC = {"segcam", "segcam.core", "segcam.methods", "segcam.models", "segcam.models.zoo", "segcam.data",
          "segcam.evaluation", "segcam.viz", "segcam.interop", "segcam.errors"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if module == "segcam":
        return "root"
    top = parts[1]
    if top == "__main__":
        return "apps"
    if top in ("errors", "checks", "spatial"):
        return "foundation"
    if top in ("explainer", "explanation", "linear"):
        return "engine"
    return top


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """segcam modules imported anywhere in ``path`` (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            subs = [f"{prefix}.{a.name}" for a in node.names if f"{prefix}.{a.name}" in known]
            names = subs if len(subs) == len(node.names) else [prefix, *subs]  # `from . import sub`
        else:
            continue
        out |= {n for n in names if n in known}
    return out


GRAPH = {m: imports_of(m, p, set(modules())) for m, p in modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_run_one_way(module):
    mine = layer_of(module)
    for target in GRAPH[module]:
        theirs = layer_of(target)
        assert theirs == mine or theirs in ALLOWED[mine], f"{module} ({mine}) imports {target} ({theirs})"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer_of(m) == "apps"))
def test_apps_use_the_public_api_only(module):
    for target in GRAPH[module]:
        assert target in PUBLIC or target.startswith("segcam.apps"), f"{module} imports {target}"


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in GRAPH[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " → ".join(trail[trail.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in GRAPH:
        if node not in state:
            visit(node, [])


def test_the_rule_sees_a_violation():
    fake = {"segcam.models.bad": {"segcam.explainer"}}
    bad = [(m, t) for m, ts in fake.items() for t in ts if layer_of(t) not in ALLOWED[layer_of(m)] | {layer_of(m)}]
    assert bad == [("segcam.models.bad", "segcam.explainer")]


def _loaded_after(code: str) -> set[str]:
    script = code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(out.split())


HEAVY = ("matplotlib", "PIL", "torchvision", "transformers", "monai", "captum", "segmentation_models_pytorch",
         "segcam.models.loaders", "segcam.viz", "segcam.apps")


@pytest.mark.parametrize("code", [
    "import segcam",
    "import segcam; segcam.Explainer; segcam.Target; segcam.regions.pixel(1, 1)",
    "import segcam.models; segcam.models.default()",
])
def test_import_segcam_stays_light(code):
    loaded = _loaded_after(code)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert heavy == []


def test_no_backend_switch_and_no_pyplot_in_the_package():
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot", text), path
