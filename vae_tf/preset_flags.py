"""The presets: the tutorials' and recipes' settings as absl flagfiles, found by name.

They live in the checkout's `flags/` folder, which installs as the package
`vae_tf.presets`, so `--preset=NAME` works from a wheel as from a checkout;
`--flagfile=PATH` keeps working for any flagfile. The first sentence of a preset's
opening comment is its one-line description.
"""

import importlib.resources
import pathlib

from vae_tf.errors import ConfigError

SUFFIX = ".flags"


def presets_dir():
    """The folder of the preset flagfiles: the `flags/` of the checkout vae_tf was imported
    from, else the installed package's (a Traversable). A second checkout run from its own
    folder, beside an editable install of another, reads its own presets."""
    checkout = pathlib.Path(__file__).resolve().parent.parent
    if (checkout / "setup.cfg").is_file() and (checkout / "flags").is_dir():
        return checkout / "flags"
    return importlib.resources.files("vae_tf.presets")


def names() -> list:
    """The preset names, sorted."""
    return sorted(entry.name[:-len(SUFFIX)] for entry in presets_dir().iterdir()
                  if entry.name.endswith(SUFFIX))


def path(name: str) -> str:
    """The flagfile of preset `name`; ConfigError naming the choices if there is none."""
    if name not in names():
        raise ConfigError(f"--preset={name} is not one of {', '.join(names())}; "
                          f"--list_presets describes them.")
    return str(presets_dir().joinpath(name + SUFFIX))


def description(name: str) -> str:
    """The first sentence of the comment that opens the preset's flagfile."""
    words = []
    for line in presets_dir().joinpath(name + SUFFIX).read_text().splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#") or (not text and words):
            break
        words += text.split()
    sentence = " ".join(words)
    end = sentence.find(". ")
    return sentence if end < 0 else sentence[:end + 1]


def listing() -> str:
    """One line per preset: its name and description."""
    width = max(map(len, names()))
    return "\n".join(f"{name:<{width}}  {description(name)}" for name in names())


def expand(argv: list) -> list:
    """argv with each `--preset=NAME` (or `--preset NAME`) replaced by `--flagfile=<its file>`.

    The flagfile takes the preset's place, so flags after it override the preset's.
    """
    expanded, index = [], 0
    while index < len(argv):
        argument = argv[index]
        if argument.startswith("--preset="):
            expanded.append("--flagfile=" + path(argument[len("--preset="):]))
        elif argument == "--preset" and index + 1 < len(argv):
            expanded.append("--flagfile=" + path(argv[index + 1]))
            index += 1
        else:
            expanded.append(argument)
        index += 1
    return expanded
