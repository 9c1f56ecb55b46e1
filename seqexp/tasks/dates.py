"""Date translation: the course's encoder–decoder problem (T_x ≠ T_y), at character level.

"Thursday, May 3, 1979", "05/03/79", "3rd of May '79", ... -> "1979-05-03"."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from seqexp.checks import at_least
from seqexp.tasks.base import Task, TaskSpec

FIRST_DAY = datetime.date(1950, 1, 1)
LAST_DAY = datetime.date(2049, 12, 31)
"""The calendar dates are drawn from; a two-digit year ``yy`` is 19yy from 50, else 20yy."""
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd, 23rd, ..."""
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def formats() -> dict[str, Callable[[datetime.date], str]]:
    """The human-readable formats, by name."""

    def month(d: datetime.date) -> str:
        return MONTHS[d.month - 1]

    def weekday(d: datetime.date) -> str:
        return WEEKDAYS[d.weekday()]

    return {
        "d Month yyyy": lambda d: f"{d.day} {month(d)} {d.year}",
        "Weekday, Month d, yyyy": lambda d: f"{weekday(d)}, {month(d)} {d.day}, {d.year}",
        "dd/mm/yy": lambda d: f"{d:%d/%m/%y}",
        "dth of Month 'yy": lambda d: f"{ordinal(d.day)} of {month(d)} '{d:%y}",
        "Month d, yyyy": lambda d: f"{month(d)} {d.day}, {d.year}",
        "Month dth, yyyy": lambda d: f"{month(d)} {ordinal(d.day)}, {d.year}",
        "dd.mm.yyyy": lambda d: f"{d:%d.%m.%Y}",
        "d-Mon-yy": lambda d: f"{d.day}-{month(d)[:3]}-{d:%y}",
        "wkd d mon yyyy": lambda d: f"{weekday(d)[:3].lower()} {d.day} {month(d)[:3].lower()} {d.year}",
        "the dth of month yyyy": lambda d: f"the {ordinal(d.day)} of {month(d).lower()} {d.year}",
    }


FORMATS = formats()
TARGET_SYMBOLS = "0123456789-"
"""Target token ids 0..10; then ``<EOS>`` (11) and the decoder's start token ``<SOS>`` (12)."""
EOS, SOS = len(TARGET_SYMBOLS), len(TARGET_SYMBOLS) + 1
ISO_LENGTH = len("1979-05-03")
PAD = 0
"""Source token 0 pads a date on the left up to ``seq_len`` characters."""


def source_alphabet() -> str:
    """Every character a formatted date can hold, sorted: source token ids 1.. (0 is padding)."""
    days = (FIRST_DAY + datetime.timedelta(n) for n in range(366 + 365 + 7))
    return "".join(sorted({ch for d in days for render in FORMATS.values() for ch in render(d)}))


ALPHABET = source_alphabet()
LONGEST = max(
    len(render(datetime.date(2001, m, d)))
    for render in FORMATS.values()
    for m in range(1, 13)
    for d in (22, 23, 24, 25, 26, 27, 28)
)
"""The longest date in any format (long weekday, long month, two-digit day with a suffix)."""


class DatesTask(Task):
    """Human-readable dates in :data:`FORMATS` to ISO form, one character at a time.

    A date is drawn uniformly from 1950–2049 and rendered in one of the formats, uniformly;
    inputs are its characters (ids ``1..``), padded on the left with 0 to ``seq_len``; targets
    are the 10 characters of ``yyyy-mm-dd`` then ``<EOS>``. The decoder is fed ``<SOS>`` first.

    ``exact_match`` is the share of dates whose whole output is right. A model that ignores the
    input can do no better than one fixed date: chance is one over the days in the calendar, the
    baseline. Solved above 0.95."""

    length_key = None
    """``seq_len`` only pads the source on the left: no key lengthens a date."""

    def __init__(
        self,
        seq_len: int = LONGEST,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int | None = None,
    ) -> None:
        at_least("task.seq_len", seq_len, LONGEST, "the longest formatted date")
        super().__init__(seq_len, train_size, val_size, test_size)
        self.spec = TaskSpec(
            input_size=len(ALPHABET) + 1,
            output_size=len(TARGET_SYMBOLS) + 2,
            shape="encoder_decoder",
            metric="exact_match",
            baseline=1 / ((LAST_DAY - FIRST_DAY).days + 1),
            solved_at=0.95,
            tokens=True,
            higher_is_better=True,
            start_token=SOS,
            end_token=EOS,
            pad_token=PAD,
            output_length=ISO_LENGTH + 1,
        )

    def encode(self, text: str) -> list[int]:
        """A formatted date as source ids, left-padded to ``seq_len``."""
        return [PAD] * (self.seq_len - len(text)) + [ALPHABET.index(ch) + 1 for ch in text]

    def dates(self, n: int, seed: int) -> list[tuple[str, str]]:
        """``n`` pairs ``(human-readable, ISO)``, a function of ``seed``."""
        rng = random.Random(seed)
        span = (LAST_DAY - FIRST_DAY).days
        renders = list(FORMATS.values())
        pairs = []
        for _ in range(n):
            day = FIRST_DAY + datetime.timedelta(rng.randint(0, span))
            pairs.append((rng.choice(renders)(day), day.isoformat()))
        return pairs

    def generate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        pairs = self.dates(n, seed)
        inputs = torch.tensor([self.encode(human) for human, _ in pairs], dtype=torch.long)
        targets = torch.tensor(
            [[TARGET_SYMBOLS.index(ch) for ch in iso] + [EOS] for _, iso in pairs], dtype=torch.long
        )
        return inputs, targets

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Per-step softmax cross-entropy over the output characters, averaged."""
        return F.cross_entropy(prediction.flatten(0, 1), target.flatten())

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        """``exact_match`` of the most probable character at every step (``prediction`` are logits)."""
        return {"exact_match": exact_match(prediction.argmax(-1), target)}

    @staticmethod
    def decode_source(ids: Tensor) -> str:
        return "".join(ALPHABET[i - 1] for i in ids.tolist() if i != PAD)

    @staticmethod
    def decode_target(ids: Tensor) -> str:
        """Output ids as text, up to the first ``<EOS>``."""
        text = []
        for i in ids.tolist():
            if i == EOS:
                break
            text.append(TARGET_SYMBOLS[i] if i < EOS else "?")
        return "".join(text)


def exact_match(outputs: Tensor, target: Tensor) -> Tensor:
    """Share of rows of ``outputs`` (token ids) equal to ``target`` at every step."""
    return (outputs[:, : target.shape[1]] == target).all(-1).float().mean()
