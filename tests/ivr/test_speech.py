"""Numbers and durations as word sequences, checked as the text the prompts say."""

from __future__ import annotations

import pytest

from ivr.speech import (
    WORDS,
    Gender,
    Plural,
    Unit,
    as_text,
    count_words,
    digit_words,
    duration_words,
    number_words,
    plural,
)

RU_NUMBERS = [
    (0, Gender.MASCULINE, "ноль"),
    (1, Gender.MASCULINE, "один"),
    (1, Gender.FEMININE, "одна"),
    (2, Gender.FEMININE, "две"),
    (2, Gender.MASCULINE, "два"),
    (11, Gender.FEMININE, "одиннадцать"),
    (12, Gender.FEMININE, "двенадцать"),
    (21, Gender.FEMININE, "двадцать одна"),
    (22, Gender.MASCULINE, "двадцать два"),
    (40, Gender.MASCULINE, "сорок"),
    (101, Gender.MASCULINE, "сто один"),
    (115, Gender.MASCULINE, "сто пятнадцать"),
    (999, Gender.MASCULINE, "девятьсот девяносто девять"),
    (1000, Gender.MASCULINE, "одна тысяча"),
    (2000, Gender.MASCULINE, "две тысячи"),
    (5000, Gender.MASCULINE, "пять тысяч"),
    (11000, Gender.MASCULINE, "одиннадцать тысяч"),
    (21000, Gender.MASCULINE, "двадцать одна тысяча"),
    (22001, Gender.FEMININE, "двадцать две тысячи одна"),
    (1_000_000, Gender.MASCULINE, "один миллион"),
    (2_500_000, Gender.MASCULINE, "два миллиона пятьсот тысяч"),
    (5_000_001, Gender.MASCULINE, "пять миллионов один"),
]

EN_NUMBERS = [
    (0, "zero"),
    (7, "seven"),
    (13, "thirteen"),
    (21, "twenty one"),
    (100, "one hundred"),
    (115, "one hundred fifteen"),
    (999, "nine hundred ninety nine"),
    (1000, "one thousand"),
    (21_042, "twenty one thousand forty two"),
    (2_000_300, "two million three hundred"),
]

RU_COUNTS = [
    (1, Unit.MINUTE, "одна минута"),
    (2, Unit.MINUTE, "две минуты"),
    (4, Unit.MINUTE, "четыре минуты"),
    (5, Unit.MINUTE, "пять минут"),
    (11, Unit.MINUTE, "одиннадцать минут"),
    (12, Unit.MINUTE, "двенадцать минут"),
    (14, Unit.MINUTE, "четырнадцать минут"),
    (21, Unit.MINUTE, "двадцать одна минута"),
    (22, Unit.MINUTE, "двадцать две минуты"),
    (25, Unit.MINUTE, "двадцать пять минут"),
    (111, Unit.MINUTE, "сто одиннадцать минут"),
    (1, Unit.HOUR, "один час"),
    (2, Unit.HOUR, "два часа"),
    (5, Unit.HOUR, "пять часов"),
    (21, Unit.HOUR, "двадцать один час"),
    (1, Unit.SECOND, "одна секунда"),
    (32, Unit.SECOND, "тридцать две секунды"),
    (0, Unit.SECOND, "ноль секунд"),
]

EN_COUNTS = [
    (1, Unit.MINUTE, "one minute"),
    (2, Unit.MINUTE, "two minutes"),
    (21, Unit.MINUTE, "twenty one minutes"),
    (1, Unit.HOUR, "one hour"),
    (0, Unit.SECOND, "zero seconds"),
]

DURATIONS = [
    (0, "ru", "ноль секунд"),
    (61, "ru", "одна минута одна секунда"),
    (125, "ru", "две минуты пять секунд"),
    (3600, "ru", "один час"),
    (7322, "ru", "два часа две минуты две секунды"),
    (90, "en", "one minute thirty seconds"),
    (3720, "en", "one hour two minutes"),
]


@pytest.mark.parametrize(("number", "gender", "text"), RU_NUMBERS)
def test_russian_numbers(number: int, gender: Gender, text: str) -> None:
    assert as_text(number_words(number, "ru", gender), "ru") == text


@pytest.mark.parametrize(("number", "text"), EN_NUMBERS)
def test_english_numbers(number: int, text: str) -> None:
    assert as_text(number_words(number, "en"), "en") == text


@pytest.mark.parametrize(("number", "unit", "text"), RU_COUNTS)
def test_russian_counts_agree_in_gender_and_plural(
    number: int, unit: Unit, text: str
) -> None:
    assert as_text(count_words(number, unit, "ru"), "ru") == text


@pytest.mark.parametrize(("number", "unit", "text"), EN_COUNTS)
def test_english_counts(number: int, unit: Unit, text: str) -> None:
    assert as_text(count_words(number, unit, "en"), "en") == text


@pytest.mark.parametrize(("seconds", "language", "text"), DURATIONS)
def test_durations(seconds: int, language: str, text: str) -> None:
    assert as_text(duration_words(seconds, language), language) == text


def test_russian_plural_categories() -> None:
    ones = [1, 21, 31, 101, 1001]
    few = [2, 3, 4, 22, 34, 102]
    many = [0, 5, 11, 12, 13, 14, 20, 25, 111, 112, 1000]
    assert {plural(n, "ru") for n in ones} == {Plural.ONE}
    assert {plural(n, "ru") for n in few} == {Plural.FEW}
    assert {plural(n, "ru") for n in many} == {Plural.MANY}


def test_digits_are_read_one_by_one() -> None:
    assert as_text(digit_words("40*1#", "en"), "en") == "four zero star one pound"
    assert digit_words("07", "ru") == ("n0", "n7")


def test_every_word_of_every_number_has_a_text() -> None:
    # The words used for 0..9999 in both languages are all recorded (WORDS keys).
    for language in ("ru", "en"):
        for number in range(10000):
            for gender in Gender:
                for word in number_words(number, language, gender):
                    assert word in WORDS[language], (number, word)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: number_words(-1, "ru"), "outside"),
        (lambda: number_words(10**9, "en"), "outside"),
        (lambda: number_words(1, "de"), "no number words"),
        (lambda: duration_words(-5, "ru"), "negative"),
        (lambda: digit_words("1x", "en"), "not a key"),
    ],
)
def test_bad_values_are_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
