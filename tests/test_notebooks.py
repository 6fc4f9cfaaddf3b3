"""The notebooks run end to end, headless, with small parameters.

papermill injects the parameters after each notebook's `parameters` cell and
fails if any cell raises. The notebooks read real data through vae_tf, so these
tests need the real data sets (CI has them).
"""

import json
import os
import re

import papermill
import pytest

import vae_tf

from conftest import REPO_ROOT, real_data_dir

NOTEBOOKS_DIR = os.path.join(REPO_ROOT, "notebooks")
# The settings `auto` would measure (test_tuning.py tests that), given, as Config keywords.
SETTLED = {"jit_compile": "false", "steps_per_execution": 1}
# name: (data sets it needs, parameters, a file its run must leave behind). Every
# notebook also gets EXTRA_SETTINGS=SETTLED unless its parameters say more.
CASES = {
    "01_mlp_conditional_vae.ipynb": (
        ["mnist"], {"EPOCHS": 2, "STEPS_PER_EPOCH": 2, "MODEL_DIR": "run"},
        "run/saved_model/saved_model.pb"),
    "02_conv_vae.ipynb": (
        ["mnist"], {"EPOCHS": 1, "STEPS_PER_EPOCH": 2, "MODEL_DIR": "run", "DIMENSION": 1},
        "run/saved_model/saved_model.pb"),
    # One data set's two runs (beta 1 and 0) of the notebook's three: MNIST's run takes
    # the same code path.
    "03_latent_space.ipynb": (
        ["fashion_mnist"], {"EPOCHS": 1, "STEPS_PER_EPOCH": 2, "RUNS_DIR": "runs",
                            "DATASETS": ["fashion_mnist"], "EVAL_EXAMPLES": 5, "IW_SAMPLES": 4,
                            # Its runs' SavedModels are not used by it.
                            "EXTRA_SETTINGS": {**SETTLED, "export": False}},
        "runs/fashion_mnist-beta0/evaluation.json"),
    "04_your_own_images.ipynb": (
        ["mnist"], {"EPOCHS": 1, "STEPS_PER_EPOCH": 2, "DEMO_FOLDER": "digits", "DEMO_IMAGES": 300,
                    "MODEL_DIR": "run", "EVAL_EXAMPLES": 5, "IW_SAMPLES": 4},
        "run/saved_model/saved_model.pb"),
}


def test_every_notebook_is_tested_and_stored_without_outputs():
    import nbformat

    names = sorted(n for n in os.listdir(NOTEBOOKS_DIR) if n.endswith(".ipynb"))
    assert names == sorted(CASES)
    for name in names:
        notebook = nbformat.read(os.path.join(NOTEBOOKS_DIR, name), as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), name
        assert all(not cell.outputs and cell.execution_count is None for cell in code), name
        # Every cell has its id, as nbformat 4.5 asks (nbformat.read makes up missing ones).
        with open(os.path.join(NOTEBOOKS_DIR, name)) as stored:
            assert all("id" in cell for cell in json.load(stored)["cells"]), name


def test_no_notebook_reaches_into_vae_tfs_internals():
    """The notebooks' tasks go through the Python API (vae_tf.Config, train, load, metrics,
    figure, datasets, the model's NumPy methods) and the public figure and score functions,
    not the modules the commands use."""
    import nbformat

    public = set(vae_tf.__all__)
    public_modules = {"vae_tf.figures": {"per_epoch", "plots"},
                      "vae_tf.evaluation": {"elbo_iwae"}}
    for name in CASES:
        notebook = nbformat.read(os.path.join(NOTEBOOKS_DIR, name), as_version=4)
        for cell in notebook.cells:
            if cell.cell_type != "code":
                continue
            for line in cell.source.splitlines():
                if match := re.match(r"from (vae_tf[\w.]*) import (.*)", line):
                    imported = {part.strip() for part in match.group(2).split(",")}
                    assert imported <= public_modules.get(match.group(1), public), (name, line)
                for dotted in re.findall(r"\bvae_tf\.[\w.]+", line):
                    package, _, rest = dotted.rpartition(".")
                    assert (dotted.split(".")[1] in public or rest in public_modules.get(
                        package, ()) or dotted in public_modules), (name, line)


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs(name, tmp_path):
    datasets, parameters, artefact = CASES[name]
    for dataset in datasets:
        real_data_dir(dataset)
    parameters = {key: str(tmp_path / value) if key.endswith(("_DIR", "_FOLDER")) else value
                  for key, value in ({"EXTRA_SETTINGS": SETTLED} | parameters).items()}
    output = tmp_path / name
    papermill.execute_notebook(os.path.join(NOTEBOOKS_DIR, name), str(output),
                               parameters=parameters, cwd=NOTEBOOKS_DIR, kernel_name="python3",
                               progress_bar=False)
    executed = output.read_text()
    assert '"output_type": "error"' not in executed
    assert "not applied" not in executed  # the presets' thread settings took effect
    assert "image/png" in executed  # the figures were drawn
    assert (tmp_path / artefact).is_file()
