"""Problems found in a dataset, and how readers report them: raise on the first or collect them all.

Every reader of the data pipeline (dataset YAML, COCO JSON, YOLO labels, Pascal VOC XML, image
files) reports what it finds to a :class:`ProblemLog`:

* a strict log (the default, what training uses) raises :class:`~anchorfree.errors.DatasetError`
  on the first error and emits warnings with :func:`warnings.warn` (as :class:`DatasetWarning`);
* a collecting log (what :func:`~anchorfree.data.check_dataset` and ``anchorfree data check`` use)
  records every problem and lets the reader go on with the next entry, line or file.

Because both modes run the same code, ``data check`` reports exactly what training stops on (its
errors) and what training only warns about (its warnings). A reader that cannot go on at all (an
annotation file that is not JSON) calls :meth:`ProblemLog.stop`, which records the problem and raises
in both modes.
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from anchorfree.errors import DatasetError

__all__ = ["LISTED_PER_KIND", "DatasetReport", "DatasetWarning", "Problem", "ProblemLog"]

LISTED_PER_KIND = 20
"""At most this many problems of one kind in one file are listed; the rest are counted in one line."""


@dataclass(frozen=True)
class Problem:
    """One problem of a dataset.

    Attributes:
        message: the full sentence: the file, the entry or line, the value, and what to do.
        file: the file (or dataset) the problem is in, when known.
        where: the entry or line in that file (``"annotations[12]"``, ``"line 3"``), when known.
        fatal: whether training stops on it (an error) or only warns (a warning).
        count: how many problems this line stands for (more than 1 for the "N more" lines).
    """

    message: str
    file: str | None = None
    where: str | None = None
    fatal: bool = True
    count: int = 1

    def __str__(self) -> str:
        return self.message


class DatasetWarning(UserWarning):
    """A dataset problem that training works around (clipped boxes, unknown YAML keys, ...).

    ``problem`` is the :class:`Problem`; ``str(warning)`` is its message. Built from a message alone (as
    pytest-xdist rebuilds a warning raised in a worker from its arguments), the problem is a warning of that text.
    """

    def __init__(self, problem: Problem | str) -> None:
        if isinstance(problem, str):
            problem = Problem(problem, fatal=False)
        super().__init__(problem.message)
        self.problem = problem


class ProblemLog:
    """Where readers put the problems they find.

    Args:
        strict: raise :class:`~anchorfree.errors.DatasetError` on the first error and emit warnings
            (``True``, for training), or record everything (``False``, for checking).
        limit: problems listed per ``(file, kind)``; further ones of that kind are only counted.
    """

    def __init__(self, strict: bool = True, limit: int = LISTED_PER_KIND) -> None:
        self.strict = strict
        self.limit = limit
        self._listed: list[Problem] = []
        self._counts: Counter[tuple[str | None, str, bool]] = Counter()

    def error(self, message: str, file: Any = None, where: str | None = None, kind: str | None = None) -> None:
        """An error: training cannot use the entry. Strict logs raise; collecting logs record and return."""
        if self.strict:
            raise DatasetError(message)
        self._record(Problem(message, _name(file), where, True), kind)

    def warning(self, message: str, file: Any = None, where: str | None = None, kind: str | None = None,
                stacklevel: int = 2) -> None:
        """A problem training works around. Strict logs emit a :class:`DatasetWarning`; collecting logs record it."""
        problem = Problem(message, _name(file), where, False)
        if self.strict:
            warnings.warn(DatasetWarning(problem), stacklevel=stacklevel + 1)
        else:
            self._record(problem, kind)

    def stop(self, message: str | None = None, file: Any = None, where: str | None = None) -> NoReturn:
        """An error after which the current file cannot be read further: recorded (collecting logs), then
        raised in both modes; without ``message``, reading ends after the errors recorded already.
        :meth:`absorb` recognises the exception as recorded."""
        if message is not None and not self.strict:
            self._record(Problem(message, _name(file), where, True), None)
        error = DatasetError(message or f"{file or 'the dataset'} cannot be read further")
        error.recorded = True  # type: ignore[attr-defined]
        raise error

    def absorb(self, error: BaseException) -> None:
        """Record a :class:`~anchorfree.errors.DatasetError` caught around a reader (unless :meth:`stop`
        recorded it already)."""
        if not getattr(error, "recorded", False):
            self._record(Problem(str(error)), None)

    def absorb_warning(self, warning: warnings.WarningMessage) -> None:
        """Record a warning caught around a reader."""
        message = warning.message
        if isinstance(message, DatasetWarning):
            self._record(message.problem, None)
        else:
            self._record(Problem(str(message), fatal=False), None)

    def extend(self, problems: Iterable[Problem]) -> None:
        """Record problems found elsewhere (they are listed as they are)."""
        for problem in problems:
            if self.strict and problem.fatal:
                raise DatasetError(problem.message)
            self._listed.append(problem)

    def _record(self, problem: Problem, kind: str | None) -> None:
        key = (problem.file, kind or problem.message, problem.fatal)
        self._counts[key] += 1
        if kind is None or self._counts[key] <= self.limit:
            self._listed.append(problem)

    @property
    def problems(self) -> list[Problem]:
        """The problems in the order found, then one line per kind with more than ``limit`` problems."""
        more = []
        for (file, kind, fatal), count in self._counts.items():
            if count > self.limit and kind is not None:
                rest = count - self.limit
                what = "errors" if fatal else "warnings"
                more.append(Problem(f"{file or 'the dataset'}: {rest} more {what} of this kind ({kind}) are not "
                                    f"listed; the first {self.limit} are above.", file, None, fatal, rest))
        return self._listed + more

    @property
    def has_errors(self) -> bool:
        """Whether any recorded problem is fatal."""
        return any(p.fatal for p in self._listed)


def _name(file: Any) -> str | None:
    return None if file is None else str(file)


@dataclass
class DatasetReport:
    """What :func:`~anchorfree.data.check_dataset` and :func:`~anchorfree.data.preflight` found.

    Attributes:
        source: the dataset (YAML file or folder) that was checked.
        format: ``"coco"``, ``"yolo"`` or ``"voc"`` (``None`` when the spec could not be read).
        problems: errors (training stops on them) and warnings (training works around them), in the
            order found; see :class:`Problem`.
        stats: per split, the counts of :attr:`CocoDetection.stats <anchorfree.data.CocoDetection.stats>`
            (images, annotations, boxes, crowd, clipped, dropped, negative_images).
        split_sources: per split, the annotation file (or the COCO view's source) that was read.
        class_names: the class names in label order (empty when unknown).
        images: how image files were checked: ``"headers"``, ``"decoded"`` or ``"not checked"``.
        images_checked: per split, how many image files were opened.
    """

    source: str
    format: str | None = None
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    sizes: dict[str, dict[str, float]] = field(default_factory=dict)  # per split: data.crops.object_sizes
    input_size: int = 320
    split_sources: dict[str, str] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    images: str = "not checked"
    images_checked: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        """The problems training stops on."""
        return [p for p in self.problems if p.fatal]

    @property
    def warnings(self) -> list[Problem]:
        """The problems training works around (with a warning)."""
        return [p for p in self.problems if not p.fatal]

    @property
    def ok(self) -> bool:
        """Whether training can start: no errors (warnings are allowed)."""
        return not self.errors

    def error_message(self) -> str:
        """One message listing every error, for :class:`~anchorfree.errors.DatasetError`."""
        errors = self.errors
        count = sum(p.count for p in errors)
        lines = "\n".join(f"  - {p.message}" for p in errors)
        return (f"{count} problem{'s' if count != 1 else ''} in {self.source} would stop training:\n{lines}\n"
                "Fix them, then run `anchorfree data check` on the dataset again.")

    def raise_if_errors(self) -> None:
        """Raise :class:`~anchorfree.errors.DatasetError` listing every error, if there is any."""
        if self.errors:
            raise DatasetError(self.error_message())

    def format_text(self) -> str:
        """The report as ``anchorfree data check`` prints it: statistics, then warnings (errors are
        listed by :meth:`error_message`)."""
        lines = [f"dataset: {self.source}" + (f" ({self.format})" if self.format else "")]
        for split, stats in self.stats.items():
            lines.append(f"{split}: {self.split_sources.get(split, '')}  " +
                         ", ".join(f"{k}={v}" for k, v in stats.items()))
            size = self.sizes.get(split)
            if size and size["objects"]:
                n = self.input_size
                lines.append(f"  objects: median {size['object_px']:.0f} px (sqrt(w h)) in images of median long side "
                             f"{size['images_long_side']:.0f} px; resized whole to a {n} px input: median "
                             f"{size['object_px_at_input']:.1f} px, {100 * size['tiny_share']:.0f}% under 8 px")
                if size["tiny_share"] > 0.1 or size["auto_crop"]:
                    crop = int(size["auto_crop"]) or n
                    lines.append(f"  note: at a {n} px input many objects would vanish: train on windows "
                                 f"(train.augment.crop_size={crop}; the default -1 does this for images >= 2x the "
                                 f"input) and predict with --slice {crop}")
            if split in self.images_checked:
                done = "decoded all" if self.images == "decoded" else "read the headers of all"
                lines.append(f"  {done} {self.images_checked[split]} images")
        if self.class_names:
            lines.append(f"classes ({len(self.class_names)}): {', '.join(self.class_names)}")
        for problem in self.warnings:
            lines.append(f"warning: {problem.message}")
        count = sum(p.count for p in self.errors)
        lines.append(f"{count} error(s), {sum(p.count for p in self.warnings)} warning(s)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_text()
