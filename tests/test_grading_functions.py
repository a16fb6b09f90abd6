"""Function tasks (assignments 1 and 3): the student's function against a reference, per case."""

from __future__ import annotations

import base64

import nbformat
import pytest
import torch
from safetensors.torch import save

from coursekit.grading import functions, records, registry, score


def _symmetric_matrices():
    g = torch.Generator().manual_seed(3)
    out = []
    for n in (2, 3, 5):
        a = torch.randn(n, n, generator=g, dtype=torch.float64)
        out.append((a + a.T,))
    return out


TASK = functions.FunctionTask(
    reference=torch.linalg.eigvalsh,
    cases=_symmetric_matrices,
    describe=("a 2x2 matrix", "a 3x3 matrix", "a 5x5 matrix"),
    hidden=("coursekit.curvature",),
)


@pytest.fixture(autouse=True)
def _task(monkeypatch):
    monkeypatch.setitem(registry.TASKS, "test.eigenvalues", TASK)
    functions._expected.cache_clear()
    yield
    functions._expected.cache_clear()


def right(a):
    return torch.linalg.eigh(a)[0]  # another route to the same numbers


def descending(a):
    return torch.linalg.eigh(a)[0].flip(0)


def breaks_on_large(a):
    if len(a) > 3:
        raise RuntimeError("too big")
    return torch.linalg.eigh(a)[0]


def _emitted(fn) -> dict:
    """The notebook output `record_function` makes, captured without a kernel."""
    outputs = []

    def capture(kind, key, tensors, errors):
        blob = base64.b64encode(save({k: v.contiguous() for k, v in tensors.items()})).decode()
        data = {"kind": kind, "key": key, "tensors": blob, "errors": errors}
        outputs.append(
            {"output_type": "display_data", "metadata": {}, "data": {records.MIME: data}}
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(records, "emit", capture)
        functions.record_function("test.eigenvalues", fn)
    (output,) = outputs
    return output


def _recorded(fn) -> records.Record:
    """What the grader reads back from that output."""
    return records.read(_emitted(fn))


def test_a_right_function_passes_every_case():
    record = _recorded(right)
    verdict = functions.grade_function(record.key, record.tensors, record.errors)
    assert (verdict.passed, verdict.total) == (3, 3)
    functions.check_function("test.eigenvalues", right)  # the visible test agrees


def test_a_wrong_function_fails_and_says_where():
    record = _recorded(descending)
    verdict = functions.grade_function(record.key, record.tensors, record.errors)
    assert (verdict.passed, verdict.total) == (0, 3)
    assert "a 2x2 matrix: differs from the reference" in verdict.lines[0]
    with pytest.raises(AssertionError, match="descending, a 2x2 matrix: differs"):
        functions.check_function("test.eigenvalues", descending)


def test_an_error_in_one_case_costs_that_case_only():
    record = _recorded(breaks_on_large)
    verdict = functions.grade_function(record.key, record.tensors, record.errors)
    assert (verdict.passed, verdict.total) == (2, 3)
    assert "a 5x5 matrix: raised RuntimeError: too big" in verdict.lines[2]


def test_wrong_shapes_and_types_are_explained():
    with pytest.raises(AssertionError, match=r"has shape \(1, 2\), expected \(2,\)"):
        functions.check_function("test.eigenvalues", lambda a: right(a)[None])
    with pytest.raises(AssertionError, match="returned a str"):
        functions.check_function("test.eigenvalues", lambda a: "eigenvalues")
    with pytest.raises(AssertionError, match="returned parts"):
        functions.check_function("test.eigenvalues", lambda a: (right(a), right(a)))
    with pytest.raises(AssertionError, match="not implemented yet"):
        functions.check_function("test.eigenvalues", _not_implemented)


def _not_implemented(a):
    raise NotImplementedError


def test_nested_results_and_numbers_are_compared_leaf_by_leaf():
    leaves = functions._leaves({"value": 2, "pair": (torch.ones(2), 0.5)})
    assert sorted(leaves) == ["pair/0", "pair/1", "value"]
    assert leaves["value"].dtype == torch.float64 and leaves["pair/1"].item() == 0.5


def test_missing_results_earn_nothing_and_unknown_tasks_fail_loudly():
    verdict = functions.grade_function("test.eigenvalues", {}, {})
    assert verdict.passed == 0 and "no result recorded" in verdict.lines[0]
    with pytest.raises(KeyError, match="no grading task"):
        functions.task("ps999.nothing")


def test_a_function_task_scores_a_test_cell_and_hides_the_reference_module():
    cell = nbformat.v4.new_code_cell('record_function("test.eigenvalues", eigenvalues)')
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "points": 3, "solution": False}
    cell.outputs = [nbformat.from_dict(_emitted(breaks_on_large))]
    assert score.score_cell(cell)[0] == 2.0  # 3 points x 2 of 3 cases
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell("x = 1")])
    optimizer_cell = nbformat.v4.new_code_cell('record_optimizer("ps2.adam", Adam)')
    optimizer_cell.metadata["nbgrader"] = dict(cell.metadata["nbgrader"], grade_id="u")
    nb.cells.append(optimizer_cell)
    assert score.hidden_modules(nb) == ["coursekit.curvature", "coursekit.optim", "torch.optim.*"]
