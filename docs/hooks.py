"""MkDocs hooks for the documentation site (listed under ``hooks:`` in ``mkdocs.yml``).

- The API reference follows ``cni_async.__all__``, then ``cni_async.libcni.__all__``: the
  marker in ``api.md`` becomes one section per comment group and one mkdocstrings entry per name, so a name added
  to the package appears in the reference without editing the page.
- Docstrings cross-reference with mkdocstrings' syntax (``[`CNIPlugin`][cni_async.CNIPlugin]``),
  which renders as a link and fails the strict build when the target is not in the reference.
  A Sphinx role (``:class:`~cni_async.CNIPlugin```) would render as its role name in front of a
  code span, not as a link: one that reaches a page fails the build.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

API_MARKER = "<!-- api-reference -->"
PACKAGE = Path(__file__).resolve().parents[1] / "cni_async"
INIT = PACKAGE / "__init__.py"
LIBCNI = PACKAGE / "libcni.py"
_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|attr|data|exc|mod|obj|const):<code>~?([^<]*)</code>"
)


def api_groups(init: Path = INIT) -> list[tuple[str, list[str]]]:
    """``__all__`` of a public module, as (comment, names) groups in source order."""
    source = init.read_text()
    names: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            names = list(ast.literal_eval(node.value))
    start = source.index("__all__ = (")
    groups: list[tuple[str, list[str]]] = [("", [])]
    for line in source[start:].splitlines()[1:]:
        text = line.strip()
        if text == ")":
            break
        if text.startswith("#"):
            groups.append((text.lstrip("# ").strip(), []))
        elif text.startswith('"') and text.strip('",') in names:
            groups[-1][1].append(text.strip('",'))
    return [(title, group) for title, group in groups if group]


def api_markdown() -> str:
    lines: list[str] = []
    for module, path, level in (("cni_async", INIT, "##"), ("cni_async.libcni", LIBCNI, "###")):
        if module != "cni_async":
            lines += [
                f"## `{module}`",
                "",
                "libcni's layer, for runtimes that manage attachments themselves. Every name",
                "here is also importable from `cni_async`.",
                "",
            ]
        for title, names in api_groups(path):
            public = [n for n in names if n != "__version__"]
            if not public:
                continue
            heading = title[:1].upper() + title[1:] if title else "Other names"
            lines += [f"{level} {heading}", ""]
            for name in public:
                lines += [f"::: {module}.{name}", ""]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if API_MARKER in markdown:
        return markdown.replace(API_MARKER, api_markdown())
    return markdown


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    role = _ROLE.search(html)
    if role is not None:
        raise PluginError(
            f"{page.file.src_path}: a Sphinx role renders as code, not a link: {role.group(0)!r};"
            " write [`Name`][cni_async.Name] instead"
        )
    return html
