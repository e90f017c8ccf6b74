"""pytest plugin (entry point ``pytest11``): check your own optimizer in one line.

Registered automatically when gradsuite is installed. See :func:`optimizer_conformance`.
"""

from __future__ import annotations
