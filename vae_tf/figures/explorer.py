"""The latent explorer: a local web page that decodes any point of a run's latent space.

`Explorer` answers the page's questions through the run's exported SavedModel
(its `decode` and `encode` signatures), so the page shows exactly what a
deployed model would produce, and a run folder copied to a machine without
vae_tf's checkout works as well. `make_server` serves the page
(`explorer.html`, a static page with no library) and a small JSON and PNG API
from Python's own `http.server`:

- `GET /api/info`: the model (z_dim, conditional, class names, image shape)
  and the test images' latent means and labels, for the scatter and the picker;
- `GET /api/decode?z=0.1,-2&label=3`: the decoded image, a PNG at the model's
  own resolution (the page scales it up, pixels kept square);
- `GET /api/test_image?index=7`: a test image;
- `GET /api/prior?seed=5`: a draw of z from the model's own prior;
- `GET /api/interpolate?a=1&b=2&steps=8&label=3`: the decoded straight line
  between two test images' latent means, as one PNG strip.
"""

import errno
import io
import json
import os
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

from vae_tf import log
from vae_tf.errors import ConfigError, RunDirError, VaeTfError
from vae_tf.run import layout, run_dir, run_lock

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "explorer.html")
# The test images encoded for the scatter and the picker; more only crowd the plane.
DEFAULT_TEST_IMAGES = 1000


def newest_export(model_dir: str) -> str:
    """The folder of the run's newest SavedModel version, resolved once.

    A run that is still training may switch `saved_model/current` at any time; the
    explorer keeps the version it started with.
    """
    base = os.path.join(model_dir, layout.EXPORT_DIR)
    current = os.path.join(base, "current")
    if os.path.isdir(current):
        return os.path.realpath(current)
    if os.path.isfile(os.path.join(base, "saved_model.pb")):  # an export of an earlier vae_tf
        return os.path.realpath(base)
    raise RunDirError(f"--model_dir={model_dir} has no SavedModel ({base} is missing or empty); "
                      f"export one with python -m vae_tf.export --model_dir={model_dir}.")


def png(pixels: np.ndarray) -> bytes:
    """A [H, W, C] image in [0, 1] as PNG bytes, each value rounded to 8 bits."""
    values = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    image = Image.fromarray(values[..., 0] if values.shape[-1] == 1 else values)
    stream = io.BytesIO()
    image.save(stream, format="PNG")
    return stream.getvalue()


class Explorer:
    """A run's SavedModel and test images, and the answers the page asks for."""

    def __init__(self, model_dir: str, num_test_images: int = DEFAULT_TEST_IMAGES):
        import tensorflow as tf

        self.model_dir = model_dir
        self.export = newest_export(model_dir)
        with open(os.path.join(self.export, "assets", "config.json")) as stream:
            self.description = json.load(stream)
        self._tf = tf
        self._loaded = tf.saved_model.load(self.export)
        self._decode = self._loaded.signatures["decode"]
        self._encode = self._loaded.signatures["encode"]
        self._lock = threading.Lock()  # one call into the model at a time
        self.z_dim = int(self.description["z_dim"])
        self.conditional = bool(self.description["conditional"])
        self.class_names = list(self.description["class_names"])
        self.test_images, self.test_labels = self._test_images(num_test_images)
        self.test_z = (self.encode(self.test_images) if len(self.test_images)
                       else np.zeros((0, self.z_dim), np.float32))

    def _test_images(self, count: int):
        """The run's first `count` test images, float [N, H, W, C]; none if unreadable here."""
        from vae_tf.data import sources

        empty = np.zeros((0, *self.description["image_shape"]), np.float32)
        try:
            config = run_dir.load_config(self.model_dir)
            dataset = sources.load_for(config)
        except (VaeTfError, OSError) as error:
            log.warning(f"no test images to show ({error}); the sliders and the prior still "
                        f"work.")
            return empty, np.zeros(0, np.int32)
        count = min(count, len(dataset.test))
        return dataset.test.float_images(count), dataset.test.labels[:count]

    def info(self) -> dict:
        return {"z_dim": self.z_dim, "conditional": self.conditional,
                "class_names": self.class_names,
                "image_shape": self.description["image_shape"],
                # The run's folder name and the version, which say what is decoded.
                "export": os.path.join(os.path.basename(os.path.abspath(self.model_dir)),
                                       os.path.relpath(self.export,
                                                       os.path.abspath(self.model_dir))),
                "test_z": np.round(self.test_z, 4).tolist(),
                "test_labels": self.test_labels.tolist()}

    def encode(self, images: np.ndarray) -> np.ndarray:
        """The latent means of float images [N, H, W, C], in batches."""
        means = []
        for start in range(0, len(images), 500):
            with self._lock:
                outputs = self._encode(images=self._tf.constant(images[start:start + 500]))
            means.append(outputs["z_mean"].numpy())
        return np.concatenate(means)

    def decode(self, z: np.ndarray, label=None) -> np.ndarray:
        """Images [N, H, W, C] in [0, 1] of z [N, z_dim] (and one label for all, if conditional)."""
        z = np.asarray(z, np.float32).reshape(-1, self.z_dim)
        inputs = {"z": self._tf.constant(z)}
        if self.conditional:
            inputs["label"] = self._tf.constant(np.full(len(z), 0 if label is None else label,
                                                        np.int32))
        with self._lock:
            return self._decode(**inputs)["images"].numpy()

    def prior_sample(self, seed: int) -> np.ndarray:
        """One z from the model's own prior, drawn with `seed`: the export's `sample_prior`
        (N(0, I) for an export written before it existed, whose models all had that prior)."""
        if "sample_prior" not in self._loaded.signatures:
            return np.random.default_rng(seed).standard_normal(self.z_dim).astype(np.float32)
        with self._lock:
            z = self._loaded.signatures["sample_prior"](
                num_images=self._tf.constant(1, self._tf.int32),
                seed=self._tf.constant(seed, self._tf.int64))["z"]
        return z.numpy()[0]

    def interpolation(self, first: int, second: int, steps: int, label=None) -> np.ndarray:
        """One strip [H, steps * W, C]: the decoded line between two test images' means."""
        weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        z = (1 - weights) * self.test_z[first] + weights * self.test_z[second]
        return np.concatenate(list(self.decode(z, label)), axis=1)


def _number_list(text: str, size: int) -> np.ndarray:
    values = np.array([float(v) for v in text.split(",")], np.float32)
    if values.shape != (size,) or not np.all(np.isfinite(values)):
        raise ValueError(f"z must be {size} finite numbers, comma-separated")
    return values


class _Handler(BaseHTTPRequestHandler):
    explorer: Explorer = None  # set by make_server

    def log_message(self, format, *args):  # the page asks on every slider move: stay quiet
        pass

    def _send(self, body: bytes, kind: str, status=HTTPStatus.OK):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = {key: values[-1] for key, values in urllib.parse.parse_qs(url.query).items()}
        explorer = self.explorer
        try:
            label = int(query["label"]) if query.get("label") not in (None, "") else None
            if label is not None and not 0 <= label < max(1, len(explorer.class_names)):
                raise ValueError(f"label must be one of 0..{len(explorer.class_names) - 1}")
            if url.path == "/":
                with open(PAGE, "rb") as stream:
                    self._send(stream.read(), "text/html; charset=utf-8")
            elif url.path == "/api/info":
                self._send(json.dumps(explorer.info()).encode(), "application/json")
            elif url.path == "/api/decode":
                z = _number_list(query.get("z", ""), explorer.z_dim)
                self._send(png(explorer.decode(z[None], label)[0]), "image/png")
            elif url.path == "/api/test_image":
                self._send(png(explorer.test_images[int(query["index"])]), "image/png")
            elif url.path == "/api/prior":
                z = explorer.prior_sample(int(query.get("seed", 0)))
                self._send(json.dumps({"z": z.tolist()}).encode(), "application/json")
            elif url.path == "/api/interpolate":
                strip = explorer.interpolation(int(query["a"]), int(query["b"]),
                                               min(max(int(query.get("steps", 8)), 2), 32),
                                               label)
                self._send(png(strip), "image/png")
            else:
                self._send(b"not found", "text/plain", HTTPStatus.NOT_FOUND)
        except (KeyError, ValueError, IndexError) as error:
            self._send(f"bad request: {error}".encode(), "text/plain", HTTPStatus.BAD_REQUEST)


def serve(model_dir: str, host: str, port: int, num_test_images: int) -> None:
    """Serves the page of a run until interrupted, saying where in one line.

    The port is bound first, so that a port in use is one line before the model loads.
    """
    server = make_server(None, host, port)
    try:
        server.RequestHandlerClass.explorer = found = Explorer(model_dir, num_test_images)
        if run_lock.owner(model_dir):
            log.info(f"{model_dir} is still training; the page shows its newest export, "
                     f"{found.export}, until restarted.")
        bound_host, bound_port = server.server_address[:2]
        log.info(f"exploring {found.export} at http://{bound_host}:{bound_port}/ "
                 f"(Ctrl-C stops)")
        server.serve_forever()
    finally:
        server.server_close()


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server of the page for `explorer`, bound to `host` (loopback unless asked), not started.

    Port 0 picks a free port; `server.server_address` says which.
    """
    handler = type("Handler", (_Handler,), {"explorer": explorer})
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port={port} is in use on {host}; pass another --port, or "
                              f"--port=0 for a free one.") from None
        raise ConfigError(f"--host={host} --port={port} cannot be served ({error.strerror}); "
                          f"pass another --host or --port.") from None
