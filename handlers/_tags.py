"""Coin tags for prose: which coins of the coin table a headline or summary is about.

Pure (no I/O), built from the coin table's data (``handlers.Coin`` entries plus the
table-wide crypto cues of ``[tagging]`` in ``infra/coins.toml``), so a coin added to
the table is tagged without code. Every component tags through this one class:
``CoinTable.mentions`` (the RSS producer, the article handler, Spark's article UDF).

How a headline is read:

1. **Spellings.** Each coin's ``words`` (names no other thing has: "bitcoin",
   "Cardano") match in any case. ``names`` are names that are also ordinary words
   ("ether", "Tether", "Ripple"): an entry written with a capital in the table must be
   capitalised in the text too. ``tickers`` match when written in upper case or
   ``$``-prefixed (any case with ``ticker_any_case``). All match as whole words, the
   longest spelling first ("Bitcoin cash-and-carry" before "Bitcoin"). A ticker that
   is the quote of a pair ("USDT" in "SOL/USDT") is the price's unit, not a subject.
2. **Exclusions.** A mention lying wholly inside one of its coin's ``exclude``
   phrases is another thing: "Bitcoin Cash", "Wrapped Bitcoin", "ETH Zurich",
   "ripple effect".
3. **Context.** Every remaining mention gets two scores from the whole text:

   * crypto: distinct crypto cues (the table-wide ``[tagging] crypto_cues`` and the
     coin's own ``cues``), other coins already firmly mentioned (anchors), and a
     price, percentage or trading pair just after the mention ("SOL hits $200",
     "ADA jumps 9%", "DOGE/USD");
   * other: distinct cues of the coin's non-crypto sense (``other_cues``:
     "disability", "airline", "skiers").

   ``words`` and ``$``-prefixed tickers always count. A spelling listed in
   ``needs_context`` (an acronym of something else: ADA, DOT, DOGE) counts only when
   crypto > other. Any other name or ticker counts unless other > crypto. In a line
   written all in capitals case tells nothing, so case-dependent spellings there
   need context too.

Anchors are the mentions that count without help: words, ``$``-prefixed tickers, and
names or tickers that need no context and whose coin has no other-sense cue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handlers._symbols import Coin

_WORD = re.compile(r"\w+")
_SEPARATOR = r"[\s\-]+"
"""Between the parts of a multi-word phrase: "Bitcoin Cash" = "Bitcoin-Cash" = "bitcoin  cash"."""
_SHOUT_MIN_LETTERS = 8
_SHOUT_RATIO = 0.8
_NEXT_TOKENS = re.compile(r"\W{0,8}(\S{1,24})(?:\s{1,8}(\S{1,24}))?(?:\s{1,8}(\S{1,24}))?")
"""The three tokens after a mention: "SOL hits $200", "ETH drops below $3,000"."""
_PRICE_TOKEN = re.compile(r"[+\-\u2212]?(?:[$\u20ac\u00a3]\s?\d|\d[\d,.]*\s?%)")
_PRICE_WORDS = frozenset({"price", "prices", "priced"})
_PAIR_BASE = re.compile(r"(?<![\w$])\$?[A-Z0-9]{2,12}[/\-]$")
"""Text just before a ticker that makes it the quote of a pair ("SOL/" in "SOL/USDT")."""


class Level(Enum):
    """What a mention needs before it counts."""

    ALWAYS = "always"
    DEFAULT = "unless the other sense dominates"
    CONTEXT = "only with crypto context"


@dataclass(frozen=True, slots=True)
class _Spelling:
    symbol: str
    kind: str
    """``word``, ``name`` or ``ticker``."""
    any_case: bool
    capitalised: bool
    """Names written with a capital in the table must be capitalised in the text."""
    needs_context: bool


@dataclass(frozen=True, slots=True)
class Mention:
    """One candidate mention and the decision on it (see :meth:`Tagger.explain`)."""

    symbol: str
    start: int
    end: int
    text: str
    counted: bool
    reason: str


def phrase_pattern(phrase: str) -> str:
    """Regex source for ``phrase``: literal parts, any run of spaces/hyphens between them."""
    parts = [part for part in re.split(r"[\s\-]+", phrase.strip()) if part]
    return _SEPARATOR.join(re.escape(part).replace("'", "['\u2019]") for part in parts)


def _phrase_key(text: str) -> str:
    return " ".join(re.split(r"[\s\-]+", text.strip().lower().replace("\u2019", "'")))


_Token = tuple[int, int, str]
"""(start, end, lower-cased text) of a run of word characters."""


def _tokens(text: str) -> list[_Token]:
    return [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]


class _PhraseIndex:
    """Whole-word phrases found by their first word: linear in the text, whatever their number.

    (One regex alternation of a few hundred phrases costs a try per phrase at every
    position of the text; a dictionary lookup per word does not.)
    """

    __slots__ = ("_first", "first_words")

    def __init__(self, phrases: Iterable[str]) -> None:
        first: dict[str, list[tuple[tuple[str, ...], re.Pattern[str], str]]] = {}
        for phrase in set(phrases):
            words = tuple(w.lower() for w in _WORD.findall(phrase.replace("\u2019", "'")))
            if words:
                pattern = re.compile(phrase_pattern(phrase), re.I)
                first.setdefault(words[0], []).append((words, pattern, _phrase_key(phrase)))
        for options in first.values():
            options.sort(key=lambda option: -len(option[0]))  # longest first
        self._first = first
        self.first_words = frozenset(first)
        """The words a phrase can start with (a text with none of them holds no phrase)."""

    def find(self, text: str, tokens: Sequence[_Token]) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, phrase key), leftmost first, longest at each place."""
        found: list[tuple[int, int, str]] = []
        first, count, taken = self._first, len(tokens), 0
        for i in [i for i, token in enumerate(tokens) if token[2] in first]:
            if i < taken:
                continue  # inside the phrase found just before
            for words, pattern, key in first[tokens[i][2]]:
                n = len(words)
                if i + n > count or any(tokens[i + k][2] != words[k] for k in range(1, n)):
                    continue
                start, end = tokens[i][0], tokens[i + n - 1][1]
                if pattern.fullmatch(text, start, end):
                    found.append((start, end, key))
                    taken = i + n
                    break
        return found


def _shouted_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line written (almost) all in capitals."""
    spans: list[tuple[int, int]] = []
    start = 0
    for line in text.split("\n"):
        end = start + len(line)
        upper = sum(map(str.isupper, line))
        cased = upper + sum(map(str.islower, line))
        if cased >= _SHOUT_MIN_LETTERS and upper >= _SHOUT_RATIO * cased:
            spans.append((start, end))
        start = end + 1
    return spans


@dataclass(frozen=True, slots=True)
class _Match:
    """A spelling found in the text; ``start`` includes a ``$`` prefix."""

    string: str
    token_start: int
    end: int
    spelling: _Spelling

    @property
    def dollar(self) -> bool:
        at = self.token_start
        return (
            at > 0 and self.string[at - 1] == "$" and not _WORD.match(self.string, at - 2, at - 1)
        )

    @property
    def start(self) -> int:
        return self.token_start - 1 if self.dollar else self.token_start

    @property
    def token(self) -> str:
        return self.string[self.token_start : self.end]

    @property
    def text(self) -> str:
        return self.string[self.start : self.end]


def _level(
    match: _Match, shouted: list[tuple[int, int]], exclusions: dict[str, list[tuple[int, int]]]
) -> tuple[Level | None, str]:
    """Case rules, exclusions, pair quotes, then what the mention needs to count."""
    spelling, start, end = match.spelling, match.token_start, match.end
    dollar = match.dollar
    rejected = _rejected(match.token, spelling, dollar)
    for lo, hi in exclusions.get(spelling.symbol, ()):
        if lo <= start and end <= hi:
            rejected = f"inside the exclusion {match.string[lo:hi]!r}"
    if (
        not rejected
        and spelling.kind == "ticker"
        and _PAIR_BASE.search(match.string, max(0, start - 14), start)
    ):
        rejected = "the quote of a trading pair (the unit, not the subject)"
    if rejected:
        return None, rejected
    if dollar or (spelling.kind == "word" and not spelling.needs_context):
        return Level.ALWAYS, "$-prefixed" if dollar else "name"
    case_bound = (spelling.kind == "ticker" and not spelling.any_case) or spelling.capitalised
    if spelling.needs_context or (case_bound and any(lo <= start < hi for lo, hi in shouted)):
        return Level.CONTEXT, ""
    return Level.DEFAULT, ""


def _rejected(token: str, spelling: _Spelling, dollar: bool) -> str:
    """Why the case of ``token`` rules it out ("" if it does not)."""
    if spelling.kind == "ticker" and not (dollar or spelling.any_case or token.isupper()):
        return "ticker not in upper case"
    if spelling.kind == "name" and spelling.capitalised and not token[:1].isupper():
        return "name not capitalised"
    return ""


class Tagger:
    """The coin tagger: ``tags(text)`` -> canonical symbols, in order of first mention."""

    __slots__ = (
        "_coin_cues",
        "_cue_index",
        "_exclude_index",
        "_excluded_for",
        "_global_cues",
        "_other_cues",
        "_pair_re",
        "_spelling_index",
        "_spellings",
    )

    def __init__(
        self,
        coins: Sequence[Coin],
        crypto_cues: Iterable[str] = (),
        quotes: Iterable[str] = (),
    ) -> None:
        crypto_cues = tuple(crypto_cues)  # read twice below
        spellings: dict[str, _Spelling] = {}
        for coin in coins:
            needs = {_phrase_key(s) for s in coin.needs_context}
            for word in coin.words:
                key = _phrase_key(word)
                spellings[key] = _Spelling(coin.symbol, "word", True, False, key in needs)
            for name in coin.names:
                key = _phrase_key(name)
                capitalised = name[:1].isupper()
                spellings[key] = _Spelling(coin.symbol, "name", True, capitalised, key in needs)
            for ticker in coin.tickers:
                key = _phrase_key(ticker)
                spellings[key] = _Spelling(
                    coin.symbol, "ticker", coin.ticker_any_case, False, key in needs
                )
        self._spellings = spellings
        self._spelling_index = _PhraseIndex(
            [*(w for c in coins for w in c.words), *(n for c in coins for n in c.names)]
            + [t for c in coins for t in c.tickers]
        )
        excluded_for: dict[str, set[str]] = {}
        for coin in coins:
            for phrase in coin.exclude:
                excluded_for.setdefault(_phrase_key(phrase), set()).add(coin.symbol)
        self._excluded_for = {key: frozenset(symbols) for key, symbols in excluded_for.items()}
        self._exclude_index = _PhraseIndex(p for c in coins for p in c.exclude)
        # Every cue phrase -> the roles it plays: "" (crypto, any coin), "+SYM" (crypto for
        # SYM), "-SYM" (the other sense of SYM).
        cues: dict[str, set[str]] = {}
        for cue in crypto_cues:
            cues.setdefault(_phrase_key(cue), set()).add("")
        for coin in coins:
            for cue in coin.cues:
                cues.setdefault(_phrase_key(cue), set()).add("+" + coin.symbol)
            for cue in coin.other_cues:
                cues.setdefault(_phrase_key(cue), set()).add("-" + coin.symbol)
        self._cue_index = _PhraseIndex(
            [*crypto_cues, *(c for coin in coins for c in (*coin.cues, *coin.other_cues))]
        )
        quote_list = sorted({q.upper() for q in quotes}, key=lambda q: (-len(q), q))
        self._pair_re = (
            re.compile(r"[/\-](?:" + "|".join(map(re.escape, quote_list)) + r")(?!\w)", re.I)
            if quote_list
            else None
        )
        self._global_cues = frozenset(k for k, roles in cues.items() if "" in roles)
        self._coin_cues = {
            coin.symbol: frozenset(_phrase_key(c) for c in coin.cues) for coin in coins
        }
        self._other_cues = {
            coin.symbol: frozenset(_phrase_key(c) for c in coin.other_cues) for coin in coins
        }

    # -- reading ---------------------------------------------------------------------

    def tags(self, text: object) -> tuple[str, ...]:
        """Coins the text is about, in order of first counted mention, without duplicates."""
        ordered: dict[str, None] = {}
        for mention in self.explain(text):
            if mention.counted:
                ordered.setdefault(mention.symbol, None)
        return tuple(ordered)

    def explain(self, text: object) -> list[Mention]:
        """Every candidate mention in ``text`` with whether it counts and why."""
        if not isinstance(text, str) or not text:
            return []
        if self._spelling_index.first_words.isdisjoint(_WORD.findall(text.lower())):
            return []  # the common case of a text naming no coin, cheaply
        tokens = _tokens(text)
        candidates = [
            _Match(text, start, end, self._spellings[key])
            for start, end, key in self._spelling_index.find(text, tokens)
        ]
        if not candidates:
            return []
        found_cues = frozenset(key for _, _, key in self._cue_index.find(text, tokens))
        other = {
            symbol: len(found_cues & self._other_cues[symbol])
            for symbol in {m.spelling.symbol for m in candidates}
        }
        general = len(found_cues & self._global_cues)
        case_bound = any(m.spelling.kind != "word" for m in candidates)
        shouted = _shouted_lines(text) if case_bound else []
        exclusions: dict[str, list[tuple[int, int]]] = {}
        for start, end, key in self._exclude_index.find(text, tokens):
            for symbol in self._excluded_for[key]:
                exclusions.setdefault(symbol, []).append((start, end))

        # First pass: case rules, exclusions and each mention's level.
        staged: list[tuple[_Match, _Spelling, Level | None, str]] = []
        for match in candidates:
            level, reason = _level(match, shouted, exclusions)
            staged.append((match, match.spelling, level, reason))
        anchors = {
            spelling.symbol
            for _, spelling, level, _ in staged
            if level is Level.ALWAYS
            or (level is Level.DEFAULT and other.get(spelling.symbol, 0) == 0)
        }
        # Second pass: the context scores decide the DEFAULT and CONTEXT mentions.
        out: list[Mention] = []
        for match, spelling, level, why in staged:
            symbol = spelling.symbol
            counted, reason = level is Level.ALWAYS, why
            if level is Level.DEFAULT or level is Level.CONTEXT:
                crypto = (
                    general
                    + len(found_cues & self._coin_cues.get(symbol, frozenset()))
                    + len(anchors - {symbol})
                    + self._price_next(text, match.end)
                )
                against = other.get(symbol, 0)
                counted = crypto > against if level is Level.CONTEXT else against <= crypto
                reason = f"{level.value}: crypto {crypto} vs other sense {against}"
            out.append(Mention(symbol, match.start, match.end, match.text, counted, reason))
        return out

    def _price_next(self, text: str, end: int) -> int:
        """1 when a pair, a price or a percentage follows the mention (within three tokens)."""
        if self._pair_re is not None and self._pair_re.match(text, end):
            return 1
        following = _NEXT_TOKENS.match(text, end)
        if following is None:
            return 0
        for token in following.groups():
            if token and (_PRICE_TOKEN.match(token) or token.lower() in _PRICE_WORDS):
                return 1
        return 0
