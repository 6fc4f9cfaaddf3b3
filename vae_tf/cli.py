"""absl flags generated from `Config`, and the error handling of every entry point.

Only the `python -m vae_tf.<command>` modules call into here: they define the
flags, turn the parsed FLAGS into a `Config`, and run their main function
under `run`, which reports a `VaeTfError` as one line on stderr and exits 1.
"""

import os

# TensorFlow's C++ start-up chatter hides the output users came for; this must be set
# before TensorFlow loads, which importing the configuration does.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from vae_tf import preset_flags  # noqa: E402
from vae_tf.config import AUTO, AUTO_BOOL, AUTO_INT, Config  # noqa: E402
from vae_tf.errors import ConfigError, Preempted, Terminated, VaeTfError  # noqa: E402
from vae_tf.run import stop_signals  # noqa: E402

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()


class _AutoBoolParser(flags.ArgumentParser):
    """true, false or auto (also 1 and 0); a boolean flag, so --name and --noname work."""

    def parse(self, argument):
        value = {"1": "true", "0": "false"}.get(str(argument).strip().lower(),
                                                str(argument).strip().lower())
        if value not in AUTO_BOOL:
            raise ValueError(f"expected true, false or auto, got {argument!r}")
        return value

    def flag_type(self):
        return "true, false or auto"


class _AutoIntParser(flags.ArgumentParser):
    """auto (kept as AUTO, 0) or a positive integer."""

    def parse(self, argument):
        text = str(argument).strip().lower()
        if text in ("auto", str(AUTO)):
            return AUTO
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 1:
            raise ValueError(f"expected auto or a positive integer, got {argument!r}")
        return value

    def flag_type(self):
        return "auto or a positive integer"


def define_auto_integer(name: str, help_text: str,
                        flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """A flag taking auto (its default, read as AUTO) or a positive integer."""
    flags.DEFINE_flag(flags.Flag(_AutoIntParser(), flags.ArgumentSerializer(), name, AUTO,
                                 help_text), flag_values)


def define_auto_boolean(name: str, default: str, help_text: str,
                        flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """A flag taking true, false or auto; --name and --noname also work."""
    flags.DEFINE_flag(flags.Flag(_AutoBoolParser(), flags.ArgumentSerializer(), name, default,
                                 help_text, boolean=True), flag_values)


def define_config_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one flag per Config field, with its default, help and choices."""
    for field in dataclasses.fields(Config):
        default = _default(field)
        help_text = field.metadata["help"]
        if field.metadata["choices"] == AUTO_BOOL:
            define_auto_boolean(field.name, default, help_text, flag_values)
            continue
        if field.metadata["choices"] == AUTO_INT:
            define_auto_integer(field.name, help_text, flag_values)
            continue
        if field.metadata["choices"]:
            help_text += f" One of: {', '.join(field.metadata['choices'])}."
        if isinstance(default, bool):
            flags.DEFINE_boolean(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, list):
            flags.DEFINE_list(field.name, [str(v) for v in default],
                              help_text + " Comma-separated.", flag_values=flag_values)
        else:
            flags.DEFINE_string(field.name, default, help_text, flag_values=flag_values)
    # Read before absl parses the rest (see preset_flags.expand); defined for --help.
    flags.DEFINE_string("preset", "", "Start from a preset's settings; later flags override them. "
                        f"One of: {', '.join(preset_flags.names())} (--list_presets "
                        f"describes them).", flag_values=flag_values)
    flags.DEFINE_boolean("list_presets", False, "List the presets, one line each, and exit.",
                         flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> Config:
    """The validated Config of the parsed flags."""
    values = {}
    for field in dataclasses.fields(Config):
        value = flag_values[field.name].value
        if isinstance(_default(field), list):
            try:
                value = [int(item) for item in value]
            except ValueError:
                raise ConfigError(f"--{field.name}={','.join(value)} must be comma-separated "
                                  f"integers.") from None
        values[field.name] = value
    return Config(**values).validate()


def config_from_args(args: list) -> Config:
    """The validated Config of command-line style arguments, parsed as `vae_tf.train` does.

    For notebooks and scripts: ``config_from_args(["--preset=conv_bernoulli",
    "--epochs=2"])`` reads a preset and overrides one of its settings.
    """
    flag_values = flags.FlagValues()
    define_config_flags(flag_values)
    try:
        flag_values(["vae_tf", *preset_flags.expand(list(args))])
    except flags.Error as error:
        raise ConfigError(str(error)) from None
    return config_from_flags(flag_values)


def require_model_dir(model_dir: str) -> str:
    """The --model_dir of a command that works on an existing run, which it requires."""
    if not model_dir:
        raise ConfigError("--model_dir is required: the folder of a run trained with "
                          "python -m vae_tf.train.")
    return model_dir


def run(main) -> None:
    """Runs `main(argv)` under absl, turning user errors into one line and exit 1.

    `--verbosity=1` (or higher) shows the full traceback instead.
    """

    def guarded_main(argv):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines are noise here
        if len(argv) > 1:
            _fail(f"unexpected argument {argv[1]!r}; every setting is a --flag (see --help).")
        if "list_presets" in flags.FLAGS and flags.FLAGS.list_presets:
            print(preset_flags.listing())
            return
        _stop_on_signals()
        try:
            return main(argv)
        except VaeTfError as error:
            if flags.FLAGS.verbosity >= 1:
                raise
            _fail(str(error))
        except KeyboardInterrupt:
            _exit_on_signal(signal.SIGINT)
        except (Preempted, Terminated) as stop:
            _exit_on_signal(signal.SIGTERM, getattr(stop, "where", None))
        except Exception:
            # The exception a signal raises inside Python code that TensorFlow's C++ called
            # (its nest utilities, say) can come out as another one, a bare TypeError: the
            # signal, not that error, is what ended the command.
            if stop_signals.first() and flags.FLAGS.verbosity < 1:
                _exit_on_signal(stop_signals.first())
            raise

    def parse(argv):
        try:
            argv = preset_flags.expand(argv) if "preset" in flags.FLAGS else argv
            return flags.FLAGS(argv)
        except ConfigError as error:
            _fail(str(error))
        except flags.Error as error:  # absl's own report is two lines, the cause above the last
            _fail(f"{_flag_error(error)}; see --help for every flag.")

    app.run(guarded_main, flags_parser=parse)


def _exit_on_signal(signum: int, where=None) -> None:
    """Ends the command after SIGINT or SIGTERM with its one line and 130 or 143."""
    if signum == signal.SIGINT:
        print("\nvae_tf: interrupted. The checkpoint of the last completed epoch is kept; run "
              "the same command again to resume.", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    saved = f"saved a checkpoint at {where}" if where else "what was written before is kept whole"
    print(f"vae_tf: stopped by SIGTERM; {saved}. Run the same command again to resume.",
          file=sys.stderr)
    sys.exit(EXIT_TERMINATED)


def _stop_on_signals() -> None:
    """SIGTERM and Ctrl-C at any moment end the command with one line and 143 or 130.

    Training's steps have their own handling (`callbacks.StopOnSignal`, which
    saves a checkpoint first and restores these handlers after `fit`); outside
    them (loading, tuning, figures, export, evaluation) the signal raises
    where the program is, and every file vae_tf writes is written whole or not
    at all; `stop_signals` keeps it for the places where that exception gets lost.
    After the first signal both go back to their default action, so a
    second one ends the process at once.
    """
    def stop(signum, frame):
        for handled in (signal.SIGINT, signal.SIGTERM):
            signal.signal(handled, signal.SIG_DFL)
        stop_signals.record(signum)
        stop_signals.stop_if_received()

    for signum in (signal.SIGINT, signal.SIGTERM):
        if signum == signal.SIGTERM or signal.getsignal(signum) is signal.default_int_handler:
            signal.signal(signum, stop)


def _flag_error(error: flags.Error) -> str:
    """absl's message for a flag it cannot parse, on one line, without its "ERROR::" tag."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines).replace("ERROR:: ", "")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_ERROR)
