"""Numbers, durations and digit strings as sequences of prompt words, in ru and en.

A spoken number is a playlist of short recorded words (``n20``, ``n1f``,
``minute_few``...): the word names are prompt file names, the same in every language,
and :data:`WORDS` holds what each one says, from which ``prompts/build.py`` records the
default voice and against which the tests read the sequences back as text.

Grammar. English: "one hundred twenty one", "1 minute" / "2 minutes". Russian: numbers
agree in gender with what they count (один час, одна минута, две секунды; тысяча is
feminine: две тысячи), and the counted word takes one of three forms chosen from the
last digits (CLDR plural rules for ru): *one* for 1, 21, 101 but not 11 (минута),
*few* for 2-4, 22-24 but not 12-14 (минуты), *many* otherwise (минут).
"""

from __future__ import annotations

import enum
import logging

logger = logging.getLogger(__name__)

#: Largest number spoken (below a billion; an IVR says counts, waits and positions).
MAX_NUMBER = 999_999_999
LANGUAGES = ("ru", "en")


class Gender(enum.Enum):
    MASCULINE = "m"
    FEMININE = "f"


class Plural(enum.Enum):
    """CLDR plural categories used by ru (one, few, many) and en (one, many=other)."""

    ONE = "one"
    FEW = "few"
    MANY = "many"


class Unit(enum.Enum):
    """Units of a duration, with their grammatical gender in Russian."""

    HOUR = "hour"
    MINUTE = "minute"
    SECOND = "second"

    @property
    def gender(self) -> Gender:
        return Gender.MASCULINE if self is Unit.HOUR else Gender.FEMININE


_RU_NUMBERS = {
    0: "ноль", 1: "один", 2: "два", 3: "три", 4: "четыре", 5: "пять", 6: "шесть",
    7: "семь", 8: "восемь", 9: "девять", 10: "десять", 11: "одиннадцать",
    12: "двенадцать", 13: "тринадцать", 14: "четырнадцать", 15: "пятнадцать",
    16: "шестнадцать", 17: "семнадцать", 18: "восемнадцать", 19: "девятнадцать",
    20: "двадцать", 30: "тридцать", 40: "сорок", 50: "пятьдесят", 60: "шестьдесят",
    70: "семьдесят", 80: "восемьдесят", 90: "девяносто", 100: "сто", 200: "двести",
    300: "триста", 400: "четыреста", 500: "пятьсот", 600: "шестьсот", 700: "семьсот",
    800: "восемьсот", 900: "девятьсот",
}  # fmt: skip
_EN_NUMBERS = {
    0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six",
    7: "seven", 8: "eight", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve",
    13: "thirteen", 14: "fourteen", 15: "fifteen", 16: "sixteen", 17: "seventeen",
    18: "eighteen", 19: "nineteen", 20: "twenty", 30: "thirty", 40: "forty",
    50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty", 90: "ninety",
}  # fmt: skip

#: What each word says, per language; the keys are prompt file names.
WORDS: dict[str, dict[str, str]] = {
    "ru": {
        **{f"n{n}": text for n, text in _RU_NUMBERS.items()},
        "n1f": "одна",
        "n2f": "две",
        "thousand_one": "тысяча",
        "thousand_few": "тысячи",
        "thousand_many": "тысяч",
        "million_one": "миллион",
        "million_few": "миллиона",
        "million_many": "миллионов",
        "hour_one": "час",
        "hour_few": "часа",
        "hour_many": "часов",
        "minute_one": "минута",
        "minute_few": "минуты",
        "minute_many": "минут",
        "second_one": "секунда",
        "second_few": "секунды",
        "second_many": "секунд",
        "star": "звёздочка",
        "hash": "решётка",
    },
    "en": {
        **{f"n{n}": text for n, text in _EN_NUMBERS.items()},
        "hundred": "hundred",
        "thousand": "thousand",
        "million": "million",
        "hour_one": "hour",
        "hour_many": "hours",
        "minute_one": "minute",
        "minute_many": "minutes",
        "second_one": "second",
        "second_many": "seconds",
        "star": "star",
        "hash": "pound",
    },
}


def plural(number: int, language: str) -> Plural:
    """The plural category of ``number`` (CLDR rules for integers)."""
    if language == "en":
        return Plural.ONE if number == 1 else Plural.MANY
    last, last_two = number % 10, number % 100
    if last == 1 and last_two != 11:
        return Plural.ONE
    if 2 <= last <= 4 and not 12 <= last_two <= 14:
        return Plural.FEW
    return Plural.MANY


def _check(number: int, language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"no number words for language {language!r}")
    if not 0 <= number <= MAX_NUMBER:
        raise ValueError(f"{number} is outside 0..{MAX_NUMBER}")


def _ru_below_thousand(number: int, gender: Gender) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(number, 100)
    if hundreds:
        words.append(f"n{hundreds * 100}")
    if 10 <= rest <= 19:
        words.append(f"n{rest}")
        return words
    tens, ones = divmod(rest, 10)
    if tens:
        words.append(f"n{tens * 10}")
    if ones:
        feminine = gender is Gender.FEMININE and ones in (1, 2)
        words.append(f"n{ones}f" if feminine else f"n{ones}")
    return words


def _en_below_thousand(number: int) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(number, 100)
    if hundreds:
        words += [f"n{hundreds}", "hundred"]
    if 1 <= rest <= 19:
        words.append(f"n{rest}")
    elif rest:
        tens, ones = divmod(rest, 10)
        words.append(f"n{tens * 10}")
        if ones:
            words.append(f"n{ones}")
    return words


def number_words(
    number: int, language: str, gender: Gender = Gender.MASCULINE
) -> tuple[str, ...]:
    """The words of ``number`` (0..999 999 999); ``gender`` of what it counts (ru)."""
    _check(number, language)
    if number == 0:
        return ("n0",)
    millions, rest = divmod(number, 1_000_000)
    thousands, units = divmod(rest, 1000)
    words: list[str] = []
    if language == "en":
        for group, name in ((millions, "million"), (thousands, "thousand")):
            if group:
                words += [*_en_below_thousand(group), name]
        words += _en_below_thousand(units)
        return tuple(words)
    if millions:
        words += _ru_below_thousand(millions, Gender.MASCULINE)
        words.append(f"million_{plural(millions, 'ru').value}")
    if thousands:
        words += _ru_below_thousand(thousands, Gender.FEMININE)
        words.append(f"thousand_{plural(thousands, 'ru').value}")
    words += _ru_below_thousand(units, gender)
    return tuple(words)


def count_words(number: int, unit: Unit, language: str) -> tuple[str, ...]:
    """``number`` and ``unit`` in the agreeing form: 2 минуты, 21 minutes."""
    form = plural(number, language).value
    return (*number_words(number, language, unit.gender), f"{unit.value}_{form}")


def duration_words(seconds: int, language: str) -> tuple[str, ...]:
    """A duration as hours, minutes and seconds, leaving out zero parts."""
    if seconds < 0:
        raise ValueError(f"a duration of {seconds} s is negative")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    words: list[str] = []
    for value, unit in (
        (hours, Unit.HOUR),
        (minutes, Unit.MINUTE),
        (secs, Unit.SECOND),
    ):
        if value:
            words += count_words(value, unit, language)
    return tuple(words) or count_words(0, Unit.SECOND, language)


def digit_words(digits: str, language: str) -> tuple[str, ...]:
    """Each key of ``digits`` on its own (a number read back: "4 0 0 1")."""
    _check(0, language)
    names = {"*": "star", "#": "hash"}
    words = []
    for key in digits:
        if key.isdigit():
            words.append(f"n{key}")
        elif key in names:
            words.append(names[key])
        else:
            raise ValueError(f"{key!r} is not a key to speak")
    return tuple(words)


def as_text(words: tuple[str, ...], language: str) -> str:
    """The words as text (what the recorded files say)."""
    return " ".join(WORDS[language][word] for word in words)
