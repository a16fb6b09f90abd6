"""The grading pieces on their own: records, checks, reassembly, collection, stubs, release."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from coursekit.grading import (
    assemble,
    collect,
    grade,
    optimizers,
    records,
    registry,
    sandbox,
    score,
)
from coursekit.grading.submissions import solved, with_cell, without

ROOT = Path(__file__).resolve().parents[1]
SOURCE = nbformat.read(ROOT / "solutions/ps2/ps2.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "assignments/ps2/ps2.ipynb", as_version=4)


def _record_output(kind="optimizer", key="ps2.sgd", tensors=None, errors=None) -> dict:
    """What `records.emit` puts in a notebook, built without a kernel."""
    from safetensors.torch import save

    blob = base64.b64encode(save(tensors or {"0/float64": torch.zeros(2, 3)})).decode()
    data = {"kind": kind, "key": key, "tensors": blob, "errors": errors or {}}
    return {"output_type": "display_data", "data": {records.MIME: data}, "metadata": {}}


# ---- records: plain tensors in, plain tensors out, anything else refused -------------------


def test_record_round_trip_keeps_values_dtype_and_shape():
    x = torch.randn(4, 5, dtype=torch.float64)
    record = records.read(_record_output(tensors={"a": x, "b": x.float()}))
    assert record.kind == "optimizer" and record.key == "ps2.sgd"
    assert torch.equal(record.tensors["a"], x) and record.tensors["b"].dtype == torch.float32
    assert type(record.tensors["a"]) is torch.Tensor


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: d.update(tensors="not base64!"),
        lambda d: d.update(tensors=base64.b64encode(b"\x00" * 64).decode()),
        lambda d: d.update(tensors=base64.b64encode(b"garbage").decode()),
        lambda d: d.update(kind=3),
        lambda d: d.update(errors={"x": 1}),
        lambda d: d.update(errors=["x"]),
        lambda d: d.update(tensors="A" * (records.MAX_RECORD_BYTES * 2)),
    ],
)
def test_malformed_records_are_ignored_not_trusted(corrupt):
    output = _record_output()
    corrupt(output["data"][records.MIME])
    assert records.read(output) is None


def test_a_pickle_is_never_loaded():
    # A pickled tensor is the classic way to run code in the loader; it is not a record.
    buffer = io.BytesIO()
    torch.save({"0/float64": torch.zeros(2)}, buffer)
    output = _record_output()
    output["data"][records.MIME]["tensors"] = base64.b64encode(buffer.getvalue()).decode()
    assert records.read(output) is None


# ---- the optimizer checks: independent reference (torch.optim) against coursekit's ----------


@pytest.mark.parametrize("key", sorted(registry.tasks_of("ps2")))
def test_torch_optim_passes_every_check(key):
    tensors = {
        f"{i}/{v}": optimizers.trajectory(getattr(torch.optim, ref), hyper, v)
        for i, (ref, hyper) in enumerate(optimizers.task(key).cases)
        for v in optimizers.variants()
    }
    verdict = optimizers.grade_optimizer(key, tensors, {})
    assert verdict.passed == verdict.total > 0, verdict.lines


def test_a_wrong_optimizer_fails_where_it_is_wrong():
    class NoDampening(torch.optim.SGD):  # momentum right, dampening ignored
        def __init__(self, params, **hyper):
            hyper.pop("dampening", None)
            super().__init__(params, **hyper)

    tensors = {
        f"{i}/{v}": optimizers.trajectory(NoDampening, hyper, v)
        for i, (_, hyper) in enumerate(optimizers.task("ps2.sgd_momentum").cases)
        for v in optimizers.variants()
    }
    verdict = optimizers.grade_optimizer("ps2.sgd_momentum", tensors, {})
    per_case = len(optimizers.variants())
    assert (verdict.passed, verdict.total) == (2 * per_case, 3 * per_case)
    assert any("dampening=0.5" in line and "step 2" in line for line in verdict.lines)


def test_state_dict_resume_is_checked():
    class Forgetful(torch.optim.Adam):  # loses its moments when reloaded
        def load_state_dict(self, state_dict):
            pass

    got = optimizers.trajectory(Forgetful, {"lr": 0.01}, "resume")
    want = optimizers.trajectory(torch.optim.Adam, {"lr": 0.01}, "resume")
    assert torch.equal(got[: optimizers.RESUME_AT], want[: optimizers.RESUME_AT])
    problem = optimizers._first_difference(got, want)
    assert problem and f"step {optimizers.RESUME_AT + 1}" in problem


def test_visible_check_explains_a_frozen_parameter_that_moved():
    class MovesFrozen(torch.optim.SGD):
        @torch.no_grad()
        def step(self, closure=None):
            super().step(closure)
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        p.add_(1.0)

    with pytest.raises(AssertionError, match="grad is None must not change"):
        optimizers.check_optimizer(MovesFrozen, "SGD", lr=0.05)


def test_records_of_the_wrong_kind_or_key_do_not_count():
    # A correct SGD record placed in the Adam test cell earns nothing there.
    sgd = {
        f"{i}/{v}": optimizers.trajectory(torch.optim.SGD, hyper, v)
        for i, (_, hyper) in enumerate(optimizers.task("ps2.sgd").cases)
        for v in optimizers.variants()
    }
    cell = nbformat.v4.new_code_cell('record_optimizer("ps2.adam", Adam)')
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "points": 3, "solution": False}
    cell.outputs = [nbformat.from_dict(_record_output(key="ps2.sgd", tensors=sgd))]
    assert score.score_cell(cell)[0] == 0
    cell.outputs = [nbformat.from_dict(_record_output(key="ps2.adam", tensors=sgd))]
    assert score.score_cell(cell)[0] == 0


def test_expected_records_come_from_the_cell_source():
    src = 'x = 1\nrecord_optimizer("ps2.adam", Adam)\ncoursekit.grading.record_optimizer("ps2.sgd", S)\n'
    assert score.expected_records(src) == [("optimizer", "ps2.adam"), ("optimizer", "ps2.sgd")]
    assert score.expected_records("record_optimizer(name, Adam)") == []  # not a literal
    assert score.expected_records("record_unknown('a', b)") == []
    assert score.expected_records("def (") == []


def test_partial_credit_is_points_times_fraction_passed():
    tensors = {
        f"{i}/{v}": optimizers.trajectory(torch.optim.Adam, hyper, v)
        for i, (_, hyper) in enumerate(optimizers.task("ps2.adam").cases[:2])
        for v in optimizers.variants()
    }  # two of the three cases recorded
    cell = nbformat.v4.new_code_cell('record_optimizer("ps2.adam", Adam)')
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "points": 3, "solution": False}
    cell.outputs = [nbformat.from_dict(_record_output(key="ps2.adam", tensors=tensors))]
    earned, lines = score.score_cell(cell)
    assert earned == 2.0
    assert any("no result recorded" in line for line in lines)


# ---- reassembly: the course's cells, the student's answers ---------------------------------


def _grade_ids(nb):
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]


def test_reassembly_restores_deleted_edited_and_retyped_test_cells():
    nb = without(solved(SOURCE, RELEASE), "test_adam")
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "test_sgd":
            cell.source = "pass"
        if gid == "test_rprop":
            cell.cell_type = "markdown"
        if gid == "test_adagrad":
            cell.metadata.nbgrader["points"] = 100
    graded, notes = assemble.reassemble(nb, SOURCE, RELEASE)
    assert _grade_ids(graded) == _grade_ids(SOURCE)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in graded.cells}
    assert 'record_optimizer("ps2.adam"' in by_id["test_adam"].source  # hidden tests are back
    assert by_id["test_adagrad"].metadata.nbgrader["points"] == 2
    text = " ".join(notes)
    assert "'test_adam' was deleted" in text
    assert "'test_sgd' was edited" in text
    assert "'test_rprop' was changed to markdown" in text


def test_reassembly_keeps_answers_and_added_cells_in_place():
    nb = with_cell(solved(SOURCE, RELEASE), "def helper():\n    return 1", after="setup")
    graded, notes = assemble.reassemble(nb, SOURCE, RELEASE)
    assert notes == []
    index = _grade_ids(graded).index("setup")
    assert graded.cells[index + 1].source.startswith("def helper")
    answer = next(
        c
        for c in graded.cells
        if _grade_ids(nbformat.v4.new_notebook(cells=[c]))[0] == "adam_solution"
    )
    assert "BEGIN SOLUTION" not in answer.source and "exp_avg" in answer.source


def test_a_missing_or_retyped_answer_is_graded_blank():
    nb = without(solved(SOURCE, RELEASE), "adam_solution")
    graded, notes = assemble.reassemble(nb, SOURCE, RELEASE)
    blank = next(
        c for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "adam_solution"
    )
    assert "NotImplementedError" in blank.source
    assert any("'adam_solution' was missing" in n for n in notes)


def test_student_metadata_cannot_inject_notes_or_grade_cells():
    nb = with_cell(RELEASE, "x = 1")
    nb.metadata["coursekit"] = {"problems": ["fake"]}
    nb.cells[-1].metadata["nbgrader"] = {"grade": True, "grade_id": "fake", "points": 50}
    graded, _ = assemble.reassemble(nb, SOURCE, RELEASE)
    assert "coursekit" not in graded.metadata
    assert "fake" not in _grade_ids(graded)
    assert graded.cells[-1].source == "x = 1"


# ---- collecting submissions -----------------------------------------------------------------


def _notebook_bytes(nb=RELEASE) -> bytes:
    return nbformat.writes(nb).encode()


def test_renamed_and_invalid_notebooks_are_named_in_notes():
    renamed = collect.Submission("a", {"ps2-Copy1.ipynb": _notebook_bytes()})
    assert collect.choose_notebooks(renamed, ["ps2.ipynb"])["ps2.ipynb"] is not None
    assert "ps2-Copy1.ipynb was graded in its place" in renamed.notes[0]
    broken = collect.Submission("b", {"ps2.ipynb": b"{not json"})
    assert collect.choose_notebooks(broken, ["ps2.ipynb"]) == {"ps2.ipynb": None}
    assert "not a valid notebook" in broken.notes[0]
    nothing = collect.Submission("c", {})
    assert collect.choose_notebooks(nothing, ["ps2.ipynb"]) == {"ps2.ipynb": None}
    exact = collect.Submission("d", {"ps2.ipynb": _notebook_bytes(), "ps2-Copy1.ipynb": b"x"})
    assert collect.choose_notebooks(exact, ["ps2.ipynb"])["ps2.ipynb"] == _notebook_bytes()


def test_zip_with_a_wrapping_folder_and_hostile_members(tmp_path):
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("course/alice/ps2.ipynb", _notebook_bytes())
        z.writestr("course/bob/work/ps2.ipynb", _notebook_bytes())
        z.writestr("course/../../evil/ps2.ipynb", _notebook_bytes())
        link = zipfile.ZipInfo("course/carol/ps2.ipynb")
        link.external_attr = 0o120777 << 16  # a symlink
        z.writestr(link, "/etc/shadow")
        z.writestr("course/__MACOSX/alice/._ps2.ipynb", b"junk")
    collection = collect.read(path)
    found = {s.student_id: s for s in collection.submissions}
    assert set(found) == {"alice", "bob", "carol"}
    assert list(found["alice"].files) == ["ps2.ipynb"]
    assert list(found["bob"].files) == ["work/ps2.ipynb"]
    assert found["carol"].files == {} and "is a link" in found["carol"].notes[0]
    assert collection.skipped == [
        "'course/../../evil/ps2.ipynb' is outside the zip's folders: skipped"
    ]
    assert not collect.STUDENT_ID.match("..") and not collect.STUDENT_ID.match(".hidden")


def test_zip_entries_that_belong_to_no_student_are_reported_not_graded(tmp_path):
    """A path climbing out of a student's folder is named in that student's notes; an absolute
    entry or a file outside every student folder is reported to the instructor, never taken
    for a student called "/" or skipped without a word."""
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("alice/ps2.ipynb", _notebook_bytes())
        z.writestr("mallory/../../x/ps2.ipynb", _notebook_bytes())
        z.writestr("../x.txt", b"x")
        z.writestr("/etc/ps2.ipynb", _notebook_bytes())
        z.writestr("README.txt", b"from the LMS")
    collection = collect.read(path)
    found = {s.student_id: s for s in collection.submissions}
    assert set(found) == {"alice", "mallory"}
    assert found["mallory"].files == {}
    assert found["mallory"].notes == [
        "../../x/ps2.ipynb leaves the submission folder and was ignored."
    ]
    assert collection.skipped == [
        "'../x.txt' is outside the zip's folders: skipped",
        "'/etc/ps2.ipynb' is an absolute path: skipped",
        "'README.txt' is in no student's folder: skipped",
    ]


def test_folder_submissions_skip_symlinks_and_huge_files(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice/ps2.ipynb").write_bytes(_notebook_bytes())
    (tmp_path / "mallory").mkdir()
    (tmp_path / "mallory/ps2.ipynb").symlink_to(tmp_path / "alice/ps2.ipynb")
    (tmp_path / "zed").mkdir()
    with open(tmp_path / "zed/ps2.ipynb", "wb") as f:
        f.truncate(collect.MAX_NOTEBOOK_BYTES + 1)
    (tmp_path / "notes.txt").write_text("not a student")
    collection = collect.read(tmp_path)
    found = {s.student_id: s for s in collection.submissions}
    assert collection.skipped == ["'notes.txt' is in no student's folder: skipped"]
    assert found["alice"].files and not found["mallory"].files and not found["zed"].files
    assert "not a regular file" in found["mallory"].notes[0]
    with pytest.raises(ValueError, match="submissions"):
        collect.read(tmp_path / "alice/ps2.ipynb")


def test_the_terminal_table_cuts_notes_at_a_word_and_lists_skipped_entries(tmp_path):
    long = "The answer cell 'easgd_step_solution' was changed to markdown: graded as blank. " * 3
    (tmp_path / grade.SKIPPED).write_text("'README.txt' is in no student's folder: skipped\n")
    text = grade.summary([grade.Row("a", 1, 2, "graded", long)], tmp_path)
    row = text.splitlines()[1]
    assert row.endswith(" ...") and len(row) < 140
    assert row.removesuffix(" ...").split()[-1] in long.split()  # a whole word
    assert "1 entries belonged to no student" in text and "README.txt" in text


def test_csv_has_the_promised_columns_and_blank_scores_for_failures():
    text = grade.format_csv(
        [grade.Row("a", 17.5, 18, "graded", ""), grade.Row("b", None, None, "failed", "x, y")]
    )
    lines = text.splitlines()
    assert lines[0] == "student_id,score,max_score,status,error"
    assert lines[1] == "a,17.5,18,graded," and lines[2] == 'b,,,failed,"x, y"'


def test_notes_never_quote_a_hidden_test_and_each_is_one_csv_line():
    """A timeout message that previews a test cell must not carry its hidden tests anywhere."""
    message = (
        "CellTimeoutError: A cell timed out.\nHere is a preview of the cell contents:\n"
        '### BEGIN HIDDEN TESTS\nrecord_optimizer("ps2.adam", Adam)\n### END HIDDEN TESTS\n'
        "check_optimizer(Adam)"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    score.set_notes(nb, [message])
    score.set_notes(nb, ["Collected from a zip.", *score.problems(nb)])  # replaces, not adds
    shown = nb.cells[0].source + " ".join(score.problems(nb))
    assert "record_optimizer" not in shown and "HIDDEN" not in shown
    assert "check_optimizer(Adam)" in shown and "Collected from a zip." in shown
    assert [c.cell_type for c in nb.cells] == ["markdown", "code"]
    row = grade.Row("a", 1, 18, "graded", grade._one_line(score.problems(nb)))
    assert len(grade.format_csv([row]).splitlines()) == 2


# ---- stubs that hide modules ----------------------------------------------------------------


def test_stub_keeps_names_importable_and_raises_on_use(tmp_path):
    real = Path(torch.optim.__file__).with_name("adam.py")
    stub = tmp_path / "fake_adam.py"
    stub.write_text(sandbox._stub_source(real, "torch.optim.adam"))
    namespace: dict = {"__name__": "torch.optim.adam"}
    exec(compile(stub.read_text(), str(stub), "exec"), namespace)
    assert "Adam" in namespace["__all__"] and "adam" in namespace["__all__"]
    with pytest.raises(RuntimeError, match="not available while this assignment is graded"):
        namespace["Adam"]([torch.zeros(1, requires_grad=True)])
    with pytest.raises(RuntimeError):
        namespace["adam"]()
    with pytest.raises(RuntimeError):
        type("Mine", (namespace["Adam"],), {"__module__": "__main__"})
    with pytest.raises(AttributeError):
        namespace["__getattr__"]("__path__")


def test_packages_and_single_file_modules_are_both_covered_by_stubs(tmp_path):
    """Hiding coursekit.curvature (a file) must not leave it importable beside coursekit.optim."""
    import coursekit

    probe = {"coursekit": str(Path(coursekit.__file__).parent), "torch": None}
    mounts, pycaches = sandbox._blocked_mounts(
        probe, ["coursekit.optim", "coursekit.linear_unit", "coursekit.nothing"], tmp_path
    )
    hidden = {Path(target).relative_to(probe["coursekit"]).as_posix() for _, target in mounts}
    assert hidden == {"optim", "linear_unit.py"}
    stub = next(s for s, t in mounts if str(t).endswith("linear_unit.py"))
    assert "not available while this assignment is graded" in Path(stub).read_text()
    assert all(Path(p).name == "__pycache__" for p in pycaches)


# ---- the release is what nbgrader makes from the source -------------------------------------


def _cells(nb):
    return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]
