"""The layout is the architecture: HTTP lives at the edge, and collaborators are built in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import hope

PACKAGE = Path(hope.__file__).resolve().parent
EDGE = {"server", "api"}  # the only packages that speak HTTP
HTTP_MODULES = ("fastapi", "starlette", "monailabel.endpoints", "monailabel.app")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _domain_modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in EDGE]


def test_domain_code_imports_nothing_from_http() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if m.startswith(HTTP_MODULES))
        for path in _domain_modules()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_nothing_below_the_edge_imports_the_edge() -> None:
    upward = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if m.split(".")[:2] in (["hope", "server"],
                                                                                              ["hope", "api"]))
        for path in _domain_modules()
    }
    assert {k: v for k, v in upward.items() if v} == {}


def test_only_the_composition_root_builds_the_orthanc_gateway() -> None:
    builders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                if "OrthancGateway(" in p.read_text() and p.name != "gateway.py"]
    assert builders == ["server/collaborators.py"]
