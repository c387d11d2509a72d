"""Console logging for the entry points: one line per message, without known third-party noise.

Two things made a default run hard to read. Lightning's top-level package gives its `lightning`
logger a console handler of its own ("INFO: …" on stderr) while its records also propagate to the
root logger, which Hydra configures with a console handler ("[time][name][INFO] - …" on stdout):
every Lightning message printed twice. And libraries print advice that says nothing to a mixmerge
user on every run. `setup_logging()` (first call of every entry point, after Hydra has configured
logging) fixes both; progress bars are not log records and are untouched.
"""

from __future__ import annotations

import logging
import warnings

# (logger, text of the message): messages dropped at the logger that creates them, so no handler
# (the library's own, Hydra's console or its job log file) sees them.
NOISE: tuple[tuple[str, str], ...] = (
    # An advertisement for Lightning's cloud logger, on every Trainer.
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip:"),
    # DeepSpeed's accelerator probe on a machine without a GPU. transformers imports DeepSpeed (when
    # installed) to save any model, so every CPU run printed it; with a GPU it never fires.
    ("DeepSpeed", "Setting accelerator to CPU"),
)

# (category, message regex): warnings about other libraries' internals that a user cannot act on.
QUIET_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # torch's pytree deprecation, raised inside Lightning's own code at every fit.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)


class DropMessages(logging.Filter):
    """Drop records whose message contains one of `texts`."""

    def __init__(self, *texts: str) -> None:
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


class PrintedAlready(logging.Filter):
    """For the root logger's console handler: skip a record that a console handler of a logger on
    its way up (such as Lightning's) has printed already. The job's log file still gets it."""

    def filter(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        root = logging.getLogger()
        while logger is not None and logger is not root:
            if any(is_console(handler) for handler in logger.handlers):
                return False
            logger = logger.parent if logger.propagate else None
        return True


def is_console(handler: logging.Handler) -> bool:
    """A handler writing to a stream, not to a file (FileHandler is a StreamHandler too)."""
    return isinstance(handler, logging.StreamHandler) and not isinstance(
        handler, logging.FileHandler
    )


def setup_logging() -> None:
    """One line per log message and no known third-party noise; safe to call again (a multirun
    calls it in every job, after Hydra has configured that job's logging)."""
    for name, text in NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) and text in f.texts for f in logger.filters):
            logger.addFilter(DropMessages(text))
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for handler in logging.getLogger().handlers:
        if is_console(handler) and not any(isinstance(f, PrintedAlready) for f in handler.filters):
            handler.addFilter(PrintedAlready())
