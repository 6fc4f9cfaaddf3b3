"""Whether tensorflow-datasets can download a data set from here, decided quickly.

`tfds.load` without a network retries for minutes before it fails. vae_tf
asks first, with one short HEAD request for a URL that tensorflow-datasets
itself will fetch (read from the builder's registered checksums, so the URL,
its scheme and its host are always tfds' own), through the proxies that the
`HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` variables name, as tfds' downloader
(requests) will use them.
"""

import threading
import urllib.error
import urllib.request

PROBE_TIMEOUT_SECONDS = 5.0


def download_urls(builder) -> list:
    """The URLs that `builder.download_and_prepare()` fetches, sorted; [] if tfds lists none."""
    return sorted(builder.url_infos or ())


def reachable(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether a HEAD request for `url` gets a success or redirect within `timeout` seconds.

    urllib honours the proxy variables of the environment. An HTTP error status
    counts as unreachable: a proxy that refuses the host answers with one, and
    tfds would fail on it too. The request runs in a thread because name
    resolution ignores socket timeouts and can stall on a machine without a network.
    """
    result = []

    def probe():
        try:
            request = urllib.request.Request(url, method="HEAD")
            # A new opener reads the proxy variables now; urlopen's shared one read them
            # once, at its first use in this process.
            with urllib.request.build_opener().open(request, timeout=timeout) as response:
                result.append(response.status < 400)
        except (urllib.error.URLError, OSError, ValueError):
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])
