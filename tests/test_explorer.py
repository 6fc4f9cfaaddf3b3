"""The latent explorer in a real browser: Debian's headless Chromium, driven by Playwright.

The page of a small trained run is opened, a slider moved and the plane
clicked, and the image the page shows is read back from the browser (drawn on a
canvas at its own size) and compared pixel for pixel with the SavedModel's
`decode` of the same z. The class picker is graded by the independent judge.
Runs: `mlp_conditional` and `mlp_cvae` on the offline MNIST and a small
`conv_bernoulli` on Fashion-MNIST, all with z_dim = 2.
"""

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.data import sources
from vae_tf.evaluation import judge
from vae_tf.figures import explorer
from vae_tf.run import training

from conftest import REPO_ROOT, parse_config, real_data_dir

CHROMIUM = "/usr/bin/chromium"
# As root and on a closed network: no sandbox, and none of Chromium's own connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# Without XLA: no tuning trials before training (test_tuning tests those).
RUN_FLAGS = ["--z_dim=2", "--figures_every=0", "--noprogress_bar", "--nojit_compile"]
# The README's screenshot is written by this test when this is set to a folder.
SCREENSHOT_DIR = os.environ.get("VAE_TF_SCREENSHOT_DIR")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    cvae = training.train_and_evaluate(parse_config(
        "--preset=mlp_cvae", f"--data_dir={real_data_dir('mnist')}", *RUN_FLAGS,
        "--epochs=2", "--steps_per_epoch=200", f"--model_dir={root / 'cvae'}"))
    conditional = training.train_and_evaluate(parse_config(
        "--preset=mlp_conditional", f"--data_dir={real_data_dir('mnist')}", *RUN_FLAGS,
        "--epochs=1", "--steps_per_epoch=100", f"--model_dir={root / 'conditional'}"))
    conv = training.train_and_evaluate(parse_config(
        "--preset=conv_bernoulli", f"--data_dir={real_data_dir('fashion_mnist')}", *RUN_FLAGS,
        "--conv_filters=8,8,8", "--epochs=1", "--steps_per_epoch=30",
        f"--model_dir={root / 'conv'}"))
    return {"mlp_cvae": cvae.model_dir, "mlp_conditional": conditional.model_dir,
            "conv_bernoulli": conv.model_dir}


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Served:
    """An explorer of one run, served on a free loopback port from a thread."""

    def __init__(self, model_dir, host="127.0.0.1"):
        self.explorer = explorer.Explorer(model_dir, num_test_images=300)
        self.server = explorer.make_server(self.explorer, host, 0)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def served(runs):
    servers = {name: Served(model_dir) for name, model_dir in runs.items()}
    yield servers
    for server in servers.values():
        server.close()


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready === 'true' && "
                           "document.getElementById('decoded').dataset.ticket !== undefined")
    return page


def _shown(page, z_text, label=""):
    """The decoded image the page shows once it shows z (and label), uint8 [H, W, C].

    The check and the read are one function, run in one turn of the page's event loop:
    read in a later call, the image could meanwhile be loading a newer answer, with no
    pixels (as a loaded machine once showed).
    """
    rgba, width, height = page.wait_for_function("""([z, label]) => {
        const image = document.getElementById('decoded');
        if (image.dataset.z !== z || image.dataset.label !== label || !image.complete
            || image.naturalWidth === 0) return false;
        const canvas = document.createElement('canvas');
        canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
        const context = canvas.getContext('2d');
        context.drawImage(image, 0, 0);
        const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
        return [Array.from(pixels), canvas.width, canvas.height];
    }""", arg=[z_text, label]).json_value()
    return np.array(rgba, np.uint8).reshape(height, width, 4)


def _saved_model_decode(model_dir, z, label=None):
    """What the run's SavedModel decodes z to, as the 8-bit image a PNG can hold."""
    loaded = tf.saved_model.load(explorer.newest_export(model_dir))
    inputs = {"z": tf.constant([z], tf.float32)}
    if label is not None:
        inputs["label"] = tf.constant([label], tf.int32)
    images = loaded.signatures["decode"](**inputs)["images"].numpy()[0]
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)


def _as_channels(rgba, channels):
    return rgba[..., :1] if channels == 1 else rgba[..., :3]


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["mlp_conditional", "mlp_cvae", "conv_bernoulli"])
def test_a_slider_and_a_click_on_the_plane_show_the_saved_models_decode(name, runs, served,
                                                                        browser):
    page = _open(browser, served[name].url)
    label = "0" if name.startswith("mlp") else ""
    first = _shown(page, "0.0000,0.0000", label)
    page.locator("#slider0").fill("1.5")
    moved = _shown(page, "1.5000,0.0000", label)
    expected = _saved_model_decode(runs[name], [1.5, 0.0], 0 if label else None)
    np.testing.assert_array_equal(_as_channels(moved, expected.shape[-1]), expected)
    assert not np.array_equal(moved, first)  # the image changed with the slider
    # A click on the plane decodes the point under the mouse.
    box = page.locator("#plane").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.75)
    page.wait_for_function("document.getElementById('decoded').dataset.z !== '1.5000,0.0000'")
    z_text = page.locator("#decoded").get_attribute("data-z")
    z = [float(v) for v in z_text.split(",")]
    assert z[0] < -1.0 and z[1] < -1.0  # lower left quarter of [-3, 3]^2
    clicked = _shown(page, z_text, label)
    np.testing.assert_array_equal(_as_channels(clicked, expected.shape[-1]),
                                  _saved_model_decode(runs[name], z, 0 if label else None))
    # The test picker, the prior and the interpolation strip all answer.
    page.locator("#reset").click()
    page.wait_for_function(f"document.getElementById('decoded').dataset.z === "
                           f"'{','.join(f'{v:.4f}' for v in served[name].explorer.test_z[0])}'")
    page.locator("#prior").click()
    page.wait_for_function("document.getElementById('decoded').dataset.ticket > 4")
    page.locator("#interpolate").click()
    page.wait_for_function("document.getElementById('strip').naturalWidth > 0")
    width = page.evaluate("document.getElementById('strip').naturalWidth")
    assert width == 8 * served[name].explorer.description["image_shape"][1]
    if SCREENSHOT_DIR and name == "mlp_cvae":
        page.screenshot(path=os.path.join(SCREENSHOT_DIR, "explorer.png"))
    page.close()


@pytest.mark.realdata
def test_the_class_picker_draws_the_class_the_independent_judge_sees(runs, served, browser):
    mnist = sources.load_dataset("mnist", real_data_dir("mnist"))
    grader = judge.load_or_train(mnist.train, mnist.test, "mnist", 10)
    page = _open(browser, served["mlp_cvae"].url)
    shown = []
    for label in range(10):
        page.locator("#class").select_option(str(label))
        shown.append(_shown(page, "0.0000,0.0000", str(label))[..., :1] / 255.0)
    judged = grader.predict(np.stack(shown).astype(np.float32))
    assert np.mean(judged == np.arange(10)) >= 0.8, judged
    page.close()


def _this_machines_address():
    """An address of this machine other than loopback, or None if it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def _answers(address, port):
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/api/info", timeout=10) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.mark.realdata
def test_the_server_answers_only_loopback_unless_the_host_says_otherwise(runs):
    address = _this_machines_address()
    if address is None:
        pytest.fail("this machine has no address besides loopback to test from")
    local = Served(runs["mlp_cvae"])
    everywhere = Served(runs["mlp_cvae"], host="0.0.0.0")
    try:
        assert _answers("127.0.0.1", local.server.server_address[1])
        assert not _answers(address, local.server.server_address[1])
        assert _answers(address, everywhere.server.server_address[1])
    finally:
        local.close()
        everywhere.close()


@pytest.mark.realdata
def test_decoding_answers_in_under_100_ms(served):
    """A slider feels live: the page's whole round trip for one image, median of 50."""
    times = []
    for step in range(50):
        start = time.perf_counter()
        with urllib.request.urlopen(f"{served['mlp_cvae'].url}api/decode?z={step / 25 - 1},0.5"
                                    f"&label={step % 10}") as reply:
            assert reply.headers["Content-Type"] == "image/png" and reply.read()
        times.append(time.perf_counter() - start)
    print(f"decode round trip: median {statistics.median(times) * 1000:.1f} ms")
    assert statistics.median(times) < 0.1


def _explore(*args):
    return subprocess.run([sys.executable, "-m", "vae_tf.explore", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO_ROOT,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3"))


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_a_run_without_a_saved_model_is_one_line(tmp_path):
    result = _explore(f"--model_dir={tmp_path}")
    assert result.returncode == 1
    assert _error_lines(result) == [
        f"error: --model_dir={tmp_path} has no SavedModel ({tmp_path}/saved_model is missing "
        f"or empty); export one with python -m vae_tf.export --model_dir={tmp_path}."]


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _explore(f"--model_dir={tmp_path}", f"--port={port}")
    assert result.returncode == 1
    assert _error_lines(result) == [
        f"error: --port={port} is in use on 127.0.0.1; pass another --port, or --port=0 for "
        f"a free one."]


def test_a_run_still_training_is_explored_at_its_newest_export(runs, tmp_path):
    """The lock of a live run (this test's own process holds it) and a page that still opens."""
    import shutil

    from vae_tf.run import run_lock

    model_dir = tmp_path / "training"
    shutil.copytree(runs["mlp_cvae"], model_dir, symlinks=True)
    lock = run_lock.acquire(str(model_dir))
    explore = subprocess.Popen(
        [sys.executable, "-m", "vae_tf.explore", f"--model_dir={model_dir}", "--port=0"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        note, address = explore.stdout.readline(), explore.stdout.readline()
        assert note.startswith(f"vae_tf: {model_dir} is still training; the page shows its "
                               f"newest export, {model_dir}/saved_model/2"), note
        url = address.split(" at ")[1].split()[0]
        assert _answers(url.split("//")[1].split(":")[0], int(url.rsplit(":", 1)[1].strip("/")))
    finally:
        explore.terminate()
        explore.wait(timeout=60)
        run_lock.release(lock)
