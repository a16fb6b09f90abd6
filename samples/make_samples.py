"""Write the sample submissions in samples/ps2/ (run again after changing solutions/ps2).

    python samples/make_samples.py

Five fictional students, graded by `coursekit build` into build/grades/ps2/:

    ada    everything right                                  18 / 18
    ben    SGD without dampening, Adam right, the rest blank   7 / 18
    cleo   everything right, in a renamed copy, with warnings  18 / 18 and a note
    dan    a hand-edited file that is not a valid notebook      0 / 18 and a note
    eve    Adam and Adamax handed to torch.optim               13 / 18
"""

from pathlib import Path

import nbformat

from coursekit.grading.submissions import solved, with_answer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BEN_SGD = """class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"])
                if group["momentum"] != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d.clone()
                    else:  # forgets the dampening
                        state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                    buf = state["momentum_buffer"]
                    d = d.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                p.add_(d, alpha=-group["lr"])
"""

EVE_ADAM = '''class Adam(torch.optim.Adam):
    """Why write it when torch has one?"""
'''

EVE_ADAMAX = """class Adamax(Optimizer):
    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8):
        params = list(params)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))
        self._inner = torch.optim.Adamax(params, lr=lr, betas=betas, eps=eps)

    def step(self, closure=None):
        return self._inner.step(closure)
"""


def _cell_source(nb, grade_id):
    return next(
        c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def main() -> None:
    source = nbformat.read(ROOT / "solutions/ps2/ps2.ipynb", as_version=4)
    release = nbformat.read(ROOT / "assignments/ps2/ps2.ipynb", as_version=4)
    good = solved(source, release)
    out = HERE / "ps2"

    def write(student: str, nb, name: str = "ps2.ipynb") -> None:
        (out / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / student / name)

    write("ada", good)
    ben = with_answer(release, "sgd_solution", BEN_SGD)
    write("ben", with_answer(ben, "adam_solution", _cell_source(good, "adam_solution")))
    warned = _cell_source(good, "rprop_solution").replace(
        "    def step(self, closure=None):\n",
        "    def step(self, closure=None):\n        import warnings\n"
        "        warnings.warn('Rprop ignores the learning rate after the first step')\n",
        1,
    )
    write("cleo", with_answer(good, "rprop_solution", warned), "ps2-Copy1.ipynb")
    (out / "dan").mkdir(parents=True, exist_ok=True)
    # Edited by hand outside Jupyter: valid JSON, but its cell lacks fields every code cell has.
    (out / "dan" / "ps2.ipynb").write_text(
        '{"cells": [{"cell_type": "code", "source": "import torch"}], "metadata": {},'
        ' "nbformat": 4, "nbformat_minor": 5}\n'
    )
    write(
        "eve",
        with_answer(with_answer(good, "adam_solution", EVE_ADAM), "adamax_solution", EVE_ADAMAX),
    )


if __name__ == "__main__":
    main()
