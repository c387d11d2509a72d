"""Console logging: a message printed by a library's own console handler is not printed again by
the root console handler (Hydra's), known noise is dropped, and setting up twice changes nothing."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from mixmerge.logs import NOISE, DropMessages, PrintedAlready, setup_logging


@pytest.fixture
def consoles(tmp_path: Path) -> Iterator[dict[str, io.StringIO]]:
    """A root logger as Hydra configures it (a console and a log file) and a library logger with a
    console handler of its own, as `import lightning` leaves them; restored afterwards."""
    root, library = logging.getLogger(), logging.getLogger("mixmerge_test_library")
    saved = (root.handlers[:], root.level, library.handlers[:], library.level)
    streams = {"root": io.StringIO(), "library": io.StringIO()}
    file_handler = logging.FileHandler(tmp_path / "job.log")
    root.handlers = [logging.StreamHandler(streams["root"]), file_handler]
    root.setLevel(logging.INFO)
    library.handlers = [logging.StreamHandler(streams["library"])]
    library.setLevel(logging.INFO)
    yield streams
    file_handler.close()
    root.handlers, root.level, library.handlers, library.level = (
        saved[0],
        saved[1],
        saved[2],
        saved[3],
    )


def test_each_message_is_printed_once_and_kept_in_the_log_file(consoles, tmp_path):
    setup_logging()
    logging.getLogger("mixmerge_test_library.sub").info("from the library")
    logging.getLogger("mixmerge_test_app").info("from the app")
    assert consoles["library"].getvalue() == "from the library\n"
    assert consoles["root"].getvalue() == "from the app\n"  # not the library's message again
    log = (tmp_path / "job.log").read_text()
    assert "from the library" in log and "from the app" in log


def test_without_setup_the_library_message_prints_twice(consoles):
    logging.getLogger("mixmerge_test_library.sub").info("twice")
    assert consoles["library"].getvalue() == consoles["root"].getvalue() == "twice\n"


def test_known_noise_is_dropped_and_other_messages_kept():
    setup_logging()
    for name, text in NOISE:
        logger, seen = logging.getLogger(name), io.StringIO()
        capture = logging.StreamHandler(seen)  # on the logger itself: it sees what its filters pass
        logger.addHandler(capture)
        try:
            logger.warning(f"{text} and the rest of the advice")
            logger.warning("GPU available: False, used: False")
        finally:
            logger.removeHandler(capture)
        assert seen.getvalue() == "GPU available: False, used: False\n", name


def test_setup_is_idempotent(consoles):
    setup_logging()
    setup_logging()
    for name, _ in NOISE:
        assert sum(isinstance(f, DropMessages) for f in logging.getLogger(name).filters) == 1
    console = logging.getLogger().handlers[0]
    assert sum(isinstance(f, PrintedAlready) for f in console.filters) == 1


def test_torch_pytree_deprecation_is_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setup_logging()
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1
        )
        warnings.warn("a deprecation of our own", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a deprecation of our own"]
