"""The online path: tensorflow-datasets' own URLs, asked through a proxy, on a fake internet.

A local HTTP server on 127.0.0.1 acts as the proxy named by HTTP_PROXY and
serves the IDX files by their names, so the whole download path (vae_tf's
probe, tfds' download, checksum check and preparation) runs without internet.
"""

import hashlib
import http.server
import os
import threading
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import checksums

from vae_tf.data import downloads, sources
from vae_tf.run import training

from conftest import FAST, parse_config, real_data_dir


class _FakeInternet(http.server.BaseHTTPRequestHandler):
    """A proxy that answers every URL whose file name is in `folder`, and 404 otherwise."""

    folder = ""
    requested = []

    def _file(self):
        name = os.path.basename(self.path.split("?")[0])
        path = os.path.join(self.folder, name)
        return path if name and os.path.isfile(path) else None

    def _answer(self, with_body):
        self.requested.append((self.command, self.path))
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.end_headers()
        if with_body:
            with open(path, "rb") as stream:
                self.wfile.write(stream.read())

    def do_HEAD(self):  # noqa: N802 (http.server's spelling)
        self._answer(with_body=False)

    def do_GET(self):  # noqa: N802
        self._answer(with_body=True)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_proxy(tmp_path):
    """(start(folder) -> proxy URL, requests seen); the server stops after the test."""
    servers = []
    requested = []

    def start(folder):
        handler = type("Handler", (_FakeInternet,), {"folder": str(folder),
                                                     "requested": requested})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start, requested
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def real_fashion_mnist():
    """The real Fashion-MNIST folder, found before `nothing_local` hides it."""
    return real_data_dir("fashion_mnist")


@pytest.fixture
def nothing_local(tmp_path, monkeypatch):
    """No local copy anywhere: environment variable, system folders and Keras cache hidden."""
    monkeypatch.delenv(sources.ENV_DATA_DIR, raising=False)
    for name in ("mnist", "fashion_mnist"):
        monkeypatch.setitem(sources.SYSTEM_DIRS, name, ())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(sources, "TFDS_DATA_DIR", str(tmp_path / "tfds"))
    for variable in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(variable, raising=False)


def test_the_probed_urls_are_the_ones_tfds_downloads():
    urls = downloads.download_urls(tfds.builder("fashion_mnist"))
    assert len(urls) == 4
    # tfds fetches Fashion-MNIST over plain http; probing https there found no network.
    assert all(url.startswith("http://") for url in urls)
    assert {os.path.basename(url) for url in urls} == set(sources._all_file_names())


def test_probe_goes_through_the_proxy_and_needs_a_success(tmp_path, fake_proxy, monkeypatch):
    (tmp_path / "served.gz").write_bytes(b"x")
    start, requested = fake_proxy
    monkeypatch.setenv("HTTP_PROXY", start(tmp_path))
    assert downloads.reachable("http://vae-tf-test.invalid/served.gz")
    assert requested == [("HEAD", "http://vae-tf-test.invalid/served.gz")]
    # A proxy that answers with an error (as one refusing the host does) is no way out.
    assert not downloads.reachable("http://vae-tf-test.invalid/missing.gz")


def test_probe_of_a_dead_proxy_fails_fast(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the discard port: refused
    start = time.monotonic()
    assert not downloads.reachable("http://vae-tf-test.invalid/file.gz", timeout=2)
    assert time.monotonic() - start < 5


def test_keras_download_cache_is_searched(tmp_path, nothing_local, monkeypatch):
    from conftest import write_dataset

    cache = write_dataset(tmp_path / "keras_home" / "datasets" / "fashion-mnist", 10, 10)
    assert sources.find_local_dir("fashion_mnist") == cache
    assert sources.load_dataset("fashion_mnist").source == cache


@pytest.mark.realdata
@pytest.mark.slow
def test_online_path_downloads_prepares_and_trains_fashion_mnist(
        tmp_path, real_fashion_mnist, fake_proxy, nothing_local, monkeypatch):
    debian = real_fashion_mnist
    start, requested = fake_proxy
    monkeypatch.setenv("HTTP_PROXY", start(debian))
    # The served files are the Debian package's, recompressed and so with other bytes than
    # the originals; the fake internet tells tfds their checksums, as the real one's match
    # the checksums tfds ships.
    builder_class = type(tfds.builder("fashion_mnist"))
    served = {}
    for url in downloads.download_urls(tfds.builder("fashion_mnist")):
        with open(os.path.join(debian, os.path.basename(url)), "rb") as stream:
            content = stream.read()
        served[url] = checksums.UrlInfo(size=len(content), filename=os.path.basename(url),
                                        checksum=hashlib.sha256(content).hexdigest())
    monkeypatch.setattr(builder_class, "url_infos", served)

    config = parse_config(*FAST, "--dataset=fashion_mnist", "--epochs=1",
                          "--steps_per_epoch=5", f"--model_dir={tmp_path / 'run'}",
                          "--noprogress_bar")
    result = training.train_and_evaluate(config)

    assert {url for method, url in requested if method == "GET"} == set(served)
    assert len(result.metrics) == 1 and np.isfinite(result.metrics[0]["val_loss"])
    online = sources.load_dataset("fashion_mnist")
    assert online.source.startswith("tensorflow-datasets")
    # tfds stores the examples in an order of its own: compare them as sorted sets.
    for split in ("train", "test"):
        assert _sorted_examples(getattr(online, split)) == _sorted_examples(
            sources.read_split(debian, split))


def _sorted_examples(split):
    return sorted(zip(split.labels.tolist(), map(bytes, split.images)))
