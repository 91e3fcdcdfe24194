"""The shapes of the emulator's answers: Target's XML and the ISO times of profile fetch."""

from __future__ import annotations

import time
from typing import Any
from xml.sax.saxutils import escape

from profile_sync_local.emulator.settings import EmulatorConfig

XML = "application/xml;charset=UTF-8"
JSON = "application/json;charset=UTF-8"


def render_xml(cfg: EmulatorConfig, children: list[tuple[str, Any]]) -> str:
    """<response> with these (tag, text or [children]) elements, in the configured shape.

    Adobe's examples (default): one line, elements separated by single spaces, `&` left raw
    (only < and > escaped). escaped_xml: a declaration, indentation, everything escaped.
    """

    def text(value: str) -> str:
        if cfg.escaped_xml:
            return escape(value)
        return value.replace("<", "&lt;").replace(">", "&gt;")

    def element(tag: str, value: Any, depth: int) -> str:
        if isinstance(value, list):
            if cfg.escaped_xml:
                pad = "    " * (depth + 1)
                inner = "".join(f"\n{pad}{element(t, v, depth + 1)}" for t, v in value)
                return f"<{tag}>{inner}\n{'    ' * depth}</{tag}>"
            return f"<{tag}>" + "".join(element(t, v, depth + 1) for t, v in value) + f"</{tag}>"
        return f"<{tag}>{text(value)}</{tag}>"

    if cfg.escaped_xml:
        body = "".join(f"\n    {element(t, v, 1)}" for t, v in children)
        return f'<?xml version="1.0" encoding="UTF-8"?>\n<response>{body}\n</response>\n'
    return "<response> " + " ".join(element(t, v, 1) for t, v in children) + " </response>"


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"
