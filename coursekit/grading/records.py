"""Results travel from a student's kernel to the grader as plain tensors, never as objects.

A hidden test cell does not decide points: it runs the student's code on fixed inputs and
*records* the tensors it produced. `emit` sends them as one `display_data` output of the cell
(safetensors bytes, base64 in JSON), so they reach the grader through the kernel's normal
output channel with no shared file system. The grader reads them back with `read` in its own
clean process and compares them there with the reference. Nothing a submission does inside its
kernel (patching torch.allclose, an object whose ``__eq__`` is always True, a silenced
traceback) changes what the comparison sees: safetensors holds only dtype, shape and bytes, and
its loader runs no code (unlike pickle).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import torch

MIME = "application/vnd.coursekit.record+json"
MAX_RECORD_BYTES = 16 * 2**20  # a record is a few kB; anything this large is not ours


@dataclass
class Record:
    """What one ``record_*`` call in a test cell produced."""

    kind: str
    key: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # case name -> the student's exception


def emit(kind: str, key: str, tensors: dict[str, torch.Tensor], errors: dict[str, str]) -> None:
    """Send a record as this cell's output (called inside the student's kernel)."""
    from IPython.display import display
    from safetensors.torch import save

    payload = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    data = {
        "kind": kind,
        "key": key,
        "tensors": base64.b64encode(payload).decode("ascii"),
        "errors": {k: str(v)[:2000] for k, v in errors.items()},
    }
    summary = f"recorded {len(tensors)} results for {key!r}" + (
        f" ({len(errors)} cases raised an error)" if errors else ""
    )
    display({MIME: data, "text/plain": summary}, raw=True)


def read(output: dict[str, Any]) -> Record | None:
    """The record in one notebook output, or None if it holds none or a malformed one.

    Runs in the grader: every field is checked for type and size before use, because the
    output was written by the student's kernel.
    """
    if output.get("output_type") != "display_data":
        return None
    data = output.get("data", {}).get(MIME)
    if not isinstance(data, dict):
        return None
    kind, key, blob, errors = (data.get(k) for k in ("kind", "key", "tensors", "errors"))
    if not (isinstance(kind, str) and isinstance(key, str) and isinstance(blob, str)):
        return None
    if len(blob) > MAX_RECORD_BYTES * 4 // 3 + 4:
        return None
    if not isinstance(errors, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in errors.items()
    ):
        return None
    from safetensors.torch import load

    try:
        tensors = load(base64.b64decode(blob, validate=True))
    except (binascii.Error, Exception):  # safetensors raises its own SafetensorError
        return None
    if not all(type(t) is torch.Tensor for t in tensors.values()):
        return None
    return Record(kind, key, tensors, {k: v[:2000] for k, v in errors.items()})
