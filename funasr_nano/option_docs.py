"""What the command line's flags (:mod:`funasr_nano.cli.options`) and the HTTP request fields
(:mod:`funasr_nano.server.schema`) both read from an option dataclass (:mod:`funasr_nano.options`) besides
its fields' names, types and defaults: each field's description, and the allowed values of the fields that
take one of a few strings.
"""

from __future__ import annotations

import inspect
import re
import types
from typing import Mapping

from .options import TRANSLATION_MODES

# Allowed values of fields that take one of a few strings.
CHOICES: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    "TranslationOptions.mode": TRANSLATION_MODES,
})


def field_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from the ``Attributes:`` section of ``cls``'s docstring, one line each,
    reST markup removed (``:class:`~a.B``` -> ``B``, ````x```` -> ``x``)."""
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    docs: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            name, text = match.groups()
            docs[name] = text
        elif name and line.startswith("      "):
            docs[name] += " " + line.strip()
        elif line.strip():
            break  # the next section
    clean = {}
    for name, text in docs.items():
        text = re.sub(r":\w+:`~?(?:[\w.]*\.)?(\w+)`", r"\1", text)
        clean[name] = text.replace("``", "")
    return clean
