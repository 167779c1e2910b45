"""The files a simulated run makes for itself (journals of restarted engines and standbys), kept in one
temporary directory that the run removes when it ends, whatever way it ends."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from engine.config import EngineConfig
from engine.shell.journal import Journal


class Scratch:
    """One run's temporary journals. The directory is made on first use (most runs need none) and
    `remove()` closes every journal handed out and deletes the directory with all it holds."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.journals: list[Journal] = []

    def journal(self, name: str, config: EngineConfig) -> Journal:
        """A new, empty journal of the run's (fsync off: a simulated process dies, never the machine; its
        records buffered until the simulator syncs the journal, as it does before a restart reads it)."""
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="xmc-run-"))
        journal = Journal(
            self.dir / f"{len(self.journals) + 1}-{name}.journal", config, durability="none", flush_each=False
        )
        self.journals.append(journal)
        return journal

    def reopened(self, old: Journal, new: Journal) -> None:
        """`new` is `old`'s file opened again (a restarted process cut its torn tail): closed with the run."""
        self.journals = [new if j is old else j for j in self.journals]

    def remove(self) -> None:
        for journal in self.journals:
            if not journal.fh.closed:
                journal.fh.close()
        self.journals.clear()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
