"""Coin tags for prose: which coins of the coin table a headline or summary is about.

Pure (no I/O), built from the coin table's data (``handlers.Coin`` entries plus the
table-wide rules of ``[tagging]`` in ``infra/coins.toml``, :class:`TaggingRules`), so
a coin added to the table is tagged without code. Every component tags through this
one class: ``CoinTable.mentions`` (the RSS producer, the article handler, Spark's
article UDF).

How a headline is read:

1. **Spellings.** Each coin's ``words`` (names no other thing has: "bitcoin",
   "Cardano") match in any case. ``names`` are names that are also ordinary words or
   other things' names ("ether", "Tether", "Ripple", "Solana"): an entry written with
   a capital in the table must be capitalised in the text too. ``tickers`` match when
   written in upper case or ``$``-prefixed (any case with ``ticker_any_case``); a
   ticker written like a name ("Sol", "Doge") is read only when a price, percentage
   or pair follows it, and then needs context. All match as whole words, the longest
   spelling first ("Bitcoin cash-and-carry" before "Bitcoin"). A ticker that is the
   quote of a pair ("USDT" in "SOL/USDT") is the price's unit, not a subject.
2. **Other things.** A mention is another thing when it lies wholly inside one of its
   coin's ``exclude`` phrases ("ETH Zurich", "ripple effect") or inside one of the
   table-wide ``other_assets`` (crypto assets outside the table named after a coin:
   "Bitcoin Cash", "Ethereum Classic", "Wrapped Bitcoin"); when a capitalised
   ``entity_words`` word follows it ("LINK Mobility", "LTC Properties", "Ripple
   Foods": a company, place or institution of that name); or when a
   ``derivative_prefixes`` word precedes it as part of a product name ("Lido Staked
   ETH", "Binance Wrapped BTC": a derivative token, not the coin).
3. **Context.** Every remaining mention gets two scores from the whole text:

   * crypto: distinct crypto cues (the table-wide ``crypto_cues`` and the coin's own
     ``cues``), other coins already firmly mentioned (anchors), other crypto assets
     named (``other_assets``), a price, percentage or trading pair just after the
     mention ("SOL hits $200", "ADA jumps 9%", "DOGE/USD"), and a market move word
     right after it (``market_words``: "Ether slips", "DOT drops", "Ether's drop");
   * other: distinct cues of the coin's non-crypto sense (its ``other_cues``:
     "disability", "airline", "skiers"; and the table-wide ``other_cues`` of
     domains no coin belongs to: sport, science, the arts), plus one when a word of
     ``other_sense_next`` follows a name or ticker ("Layoffs Ripple Across ...",
     "the Link Between ...": the ordinary word).

   ``words`` and ``$``-prefixed tickers always count. A spelling listed in
   ``needs_context`` (an acronym of something else: ADA, DOT, DOGE) counts only when
   crypto > other. Any other name or ticker counts unless other > crypto. In a line
   written all in capitals case tells nothing, so tickers there need context too
   (names there are read as in a Title Case line); in a line written all in lower case,
   names are read whatever their case, with context.

Anchors are the mentions that count without help: words, ``$``-prefixed tickers, and
names or tickers that need no context and whose coin has no other-sense cue in the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from handlers._symbols import Coin

_WORD = re.compile(r"\w+")
_SEPARATOR = r"[\s\-]+"
"""Between the parts of a multi-word phrase: "Bitcoin Cash" = "Bitcoin-Cash" = "bitcoin  cash"."""
_SHOUT_MIN_LETTERS = 8
_SHOUT_RATIO = 0.8
_NEXT_TOKENS = re.compile(
    r"[^\w$\u20ac\u00a3+\u2212(\-]{0,8}(\S{1,24})(?:\s{1,8}(\S{1,24}))?(?:\s{1,8}(\S{1,24}))?"
)
"""The three tokens after a mention: "SOL hits $200", "ETH drops below $3,000", "ADA: $0.72"."""
_PRICE_TOKEN = re.compile(r"\(?[+\-\u2212]?(?:[$\u20ac\u00a3]\s?\d|\d[\d,.]*\s?%)")
_PRICE_WORDS = frozenset({"price", "prices", "priced"})
_PAIR_BASE = re.compile(r"(?<![\w$])\$?[A-Z0-9]{2,12}[/\-]$")
"""Text just before a ticker that makes it the quote of a pair ("SOL/" in "SOL/USDT")."""
_TIGHT_GAP = re.compile(r"[ \t\-]{1,3}")
"""What may stand between a spelling and the word read with it ("LINK Mobility", "Lido Staked")."""
_PHRASE_GAP = re.compile(r"['\u2019]?[ \t\-(),]{0,4}")
"""Between a mention and the words of its own clause: "Ether's drop", "Polygon (POL) jumps"."""
_POSSESSIVE = "s"
_MARKET_REACH = 2
"""Words read after a mention for a market move: "Ether slips", "Ether price slips"."""
_FUNCTION_WORDS = frozenset(
    {
        *("a", "an", "the", "of", "in", "on", "at", "to", "for", "from", "by", "with", "and"),
        *("or", "as", "is", "are", "amid", "after", "before", "new", "more", "most", "record"),
        *("total", "all", "its", "their", "our", "your"),
    }
)
"""Capitalised in Title Case, but never a brand ("Amount Of Staked ETH" is staked ETH)."""
_LISTING_GAP = re.compile(r"\s?:\s{0,2}")
"""Between an exchange and a share's ticker: "(NYSE: SOL)"."""
_MAX_PREFIXES = 4
"""Derivative prefixes walked back over ("Liquid Restaked ETH"); bounded for hostile text."""
_CAPITALISED = re.compile(r"(?<![^\W\d_])[A-Z][a-z]")
"""A word written with a capital and then small letters ("Ether", not "ETF" or "ether")."""
_TITLE_TICKER_MIN = 3
"""A ticker written like a name ("Sol", "Doge") is read from this length on (not "Op")."""


class TaggingRules(msgspec.Struct, frozen=True, kw_only=True):
    """The table-wide rules (``[tagging]`` in ``infra/coins.toml``; see the module docstring).

    ``crypto_cues`` and ``other_cues`` are phrases of the crypto sense and of domains
    no coin belongs to; ``other_assets`` phrases naming crypto assets outside the table.
    ``market_words``, ``entity_words``, ``derivative_prefixes``, ``other_sense_next``
    and ``listing_prefixes`` are single words read right next to a mention.
    """

    crypto_cues: tuple[str, ...] = ()
    other_cues: tuple[str, ...] = ()
    other_assets: tuple[str, ...] = ()
    market_words: tuple[str, ...] = ()
    entity_words: tuple[str, ...] = ()
    derivative_prefixes: tuple[str, ...] = ()
    branded_prefixes: tuple[str, ...] = ()
    other_sense_next: tuple[str, ...] = ()
    listing_prefixes: tuple[str, ...] = ()


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
_Found = tuple[int, int, str, int, int]
"""(start, end, phrase key, index of its first token, index of its last token)."""


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

    def find(self, text: str, tokens: Sequence[_Token]) -> list[_Found]:
        """Non-overlapping phrases found, leftmost first, longest at each place."""
        found: list[_Found] = []
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
                    found.append((start, end, key, i, i + n - 1))
                    taken = i + n
                    break
        return found


def _caseless_lines(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(start, end) of the lines written (almost) all in capitals, and of those in lower case.

    A line is in lower case when no word in it is capitalised ("ether slides 4% as ETF
    outflows mount": acronyms in capitals may stand in it).
    """
    shouted: list[tuple[int, int]] = []
    lowered: list[tuple[int, int]] = []
    start = 0
    for line in text.split("\n"):
        end = start + len(line)
        upper = sum(map(str.isupper, line))
        cased = upper + sum(map(str.islower, line))
        if cased >= _SHOUT_MIN_LETTERS:
            if upper >= _SHOUT_RATIO * cased:
                shouted.append((start, end))
            elif not _CAPITALISED.search(line):
                lowered.append((start, end))
        start = end + 1
    return shouted, lowered


def _title_word(token: str) -> bool:
    """Written like a name: "Sol", "Doge" (not "SOL", "sol", "SoL")."""
    return token[:1].isupper() and token[1:].islower()


@dataclass(frozen=True, slots=True)
class _Match:
    """A spelling found in the text; ``start`` includes a ``$`` prefix."""

    string: str
    token_start: int
    end: int
    index: int
    """Position of the spelling's last word in the text's token list."""
    first: int
    """Position of its first word."""
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


class _Reading:
    """One text's tokens, and the words read next to a mention."""

    __slots__ = ("text", "tokens")

    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens

    def gap(self, left: int, right: int) -> str:
        """The characters between token ``left`` and token ``right`` (= left + 1)."""
        return self.text[self.tokens[left][1] : self.tokens[right][0]]

    def next_word(self, match: _Match) -> tuple[str, str] | None:
        """(as written, lower-cased) of the word right after the mention, spaces between."""
        i = match.index + 1
        if i >= len(self.tokens) or not _TIGHT_GAP.fullmatch(self.gap(i - 1, i)):
            return None
        start, end, lower = self.tokens[i]
        return self.text[start:end], lower

    def following(self, match: _Match, count: int) -> list[str]:
        """Up to ``count`` words of the mention's clause after it, past a possessive 's."""
        out: list[str] = []
        i = match.index
        while len(out) < count and i + 1 < len(self.tokens):
            if not _PHRASE_GAP.fullmatch(self.gap(i, i + 1)):
                break
            i += 1
            lower = self.tokens[i][2]
            if lower == _POSSESSIVE and self.gap(i - 1, i) in ("'", "\u2019") and not out:
                continue
            out.append(lower)
        return out

    def listed(self, index: int, exchanges: frozenset[str]) -> bool:
        """Whether token ``index`` follows an exchange's name and a colon: "(NYSE: SOL)"."""
        return (
            index > 0
            and self.tokens[index - 1][2] in exchanges
            and bool(_LISTING_GAP.fullmatch(self.gap(index - 1, index)))
        )

    def before(self, index: int) -> tuple[int, str, str] | None:
        """(index, as written, lower-cased) of the word before token ``index``, spaces between.

        A possessive ("Lido's") reads as its owner.
        """
        i = index - 1
        if i < 0 or not _TIGHT_GAP.fullmatch(self.gap(i, i + 1)):
            return None
        if self.tokens[i][2] == _POSSESSIVE and i > 0 and self.gap(i - 1, i) in ("'", "\u2019"):
            i -= 1
        start, end, lower = self.tokens[i]
        return i, self.text[start:end], lower


def _rejected_case(token: str, spelling: _Spelling, dollar: bool, priced: bool) -> str:
    """Why the case of ``token`` rules it out ("" if it does not)."""
    if spelling.kind == "ticker" and not (dollar or spelling.any_case or token.isupper()):
        if priced and len(token) >= _TITLE_TICKER_MIN and _title_word(token):
            return ""  # "Sol price slides 9%": read, with context (below)
        return "ticker not in upper case"
    if spelling.kind == "name" and spelling.capitalised and not token[:1].isupper():
        return "name not capitalised"
    return ""


class Tagger:
    """The coin tagger: ``tags(text)`` -> canonical symbols, in order of first mention."""

    __slots__ = (
        "_asset_keys",
        "_branded_prefixes",
        "_coin_cues",
        "_compact_re",
        "_compact_symbol",
        "_cue_index",
        "_derivative_prefixes",
        "_entity_words",
        "_exclude_index",
        "_excluded_for",
        "_global_cues",
        "_listing_prefixes",
        "_market_words",
        "_other_cues",
        "_other_sense_next",
        "_pair_re",
        "_spelling_index",
        "_spellings",
    )

    def __init__(
        self,
        coins: Sequence[Coin],
        rules: TaggingRules | None = None,
        quotes: Iterable[str] = (),
    ) -> None:
        rules = rules or TaggingRules()
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
        # A coin of the table wins over an "other asset" of the same spelling (a coin added
        # later, e.g. BCH, is no longer "another asset"). Both kinds of phrase are found in
        # one pass over the text.
        assets = [a for a in rules.other_assets if _phrase_key(a) not in spellings]
        self._asset_keys = frozenset(_phrase_key(a) for a in assets)
        self._exclude_index = _PhraseIndex([*(p for c in coins for p in c.exclude), *assets])
        # Every cue phrase -> the roles it plays: "" (crypto, any coin), "+SYM" (crypto for
        # SYM), "-SYM" (the other sense of SYM), "-" (a domain no coin belongs to).
        cues: dict[str, set[str]] = {}
        for cue in rules.crypto_cues:
            cues.setdefault(_phrase_key(cue), set()).add("")
        for cue in rules.other_cues:
            cues.setdefault(_phrase_key(cue), set()).add("-")
        for coin in coins:
            for cue in coin.cues:
                cues.setdefault(_phrase_key(cue), set()).add("+" + coin.symbol)
            for cue in coin.other_cues:
                cues.setdefault(_phrase_key(cue), set()).add("-" + coin.symbol)
        self._cue_index = _PhraseIndex(
            [
                *rules.crypto_cues,
                *rules.other_cues,
                *(c for coin in coins for c in (*coin.cues, *coin.other_cues)),
            ]
        )
        quote_list = sorted({q.upper() for q in quotes}, key=lambda q: (-len(q), q))
        self._pair_re = (
            re.compile(r"[/\-](?:" + "|".join(map(re.escape, quote_list)) + r")(?!\w)", re.I)
            if quote_list
            else None
        )
        # Compact pairs written in capitals ("BTCUSDT", "XBTEUR"): the base is the subject.
        compact_symbol = {
            t.upper(): coin.symbol for coin in coins for t in coin.tickers if len(t) >= 2
        }
        bases = sorted(compact_symbol, key=lambda t: (-len(t), t))
        self._compact_symbol = compact_symbol
        self._compact_re = (
            re.compile(
                r"(?<![\w$])("
                + "|".join(map(re.escape, bases))
                + ")("
                + "|".join(map(re.escape, quote_list))
                + r")(?!\w)"
            )
            if bases and quote_list
            else None
        )

        self._global_cues = frozenset(k for k, roles in cues.items() if "" in roles)
        global_other = frozenset(k for k, roles in cues.items() if "-" in roles)
        self._coin_cues = {
            coin.symbol: frozenset(_phrase_key(c) for c in coin.cues) for coin in coins
        }
        # A coin's other sense: its own cues and the domains no coin belongs to.
        self._other_cues = {
            coin.symbol: frozenset(_phrase_key(c) for c in coin.other_cues) | global_other
            for coin in coins
        }
        self._market_words = frozenset(w.lower() for w in rules.market_words)
        self._entity_words = frozenset(w.lower() for w in rules.entity_words)
        self._derivative_prefixes = frozenset(w.lower() for w in rules.derivative_prefixes)
        self._branded_prefixes = frozenset(w.lower() for w in rules.branded_prefixes)
        self._other_sense_next = frozenset(w.lower() for w in rules.other_sense_next)
        self._listing_prefixes = frozenset(w.lower() for w in rules.listing_prefixes)

    # -- reading ---------------------------------------------------------------------

    def tags(self, text: object) -> tuple[str, ...]:
        """Coins the text is about, in order of first counted mention, without duplicates."""
        ordered: dict[str, None] = {}
        for mention in self._read(text, exact=False):
            if mention.counted:
                ordered.setdefault(mention.symbol, None)
        return tuple(ordered)

    def explain(self, text: object) -> list[Mention]:
        """Every candidate mention in ``text`` with whether it counts and why."""
        return self._read(text, exact=True)

    def _read(self, text: object, *, exact: bool) -> list[Mention]:
        """The mentions; ``exact=False`` stops scoring a mention once its decision is known.

        (The decisions are the same either way; only the scores in ``reason`` differ.)
        """
        if not isinstance(text, str) or not text:
            return []
        compact = self._compact_pairs(text)
        if self._spelling_index.first_words.isdisjoint(_WORD.findall(text.lower())):
            return compact  # the common case of a text naming no coin, cheaply
        tokens = _tokens(text)
        found = self._spelling_index.find(text, tokens)
        if not found:
            return compact
        reading = _Reading(text, tokens)
        candidates = [
            _Match(text, start, end, last, first, self._spellings[key])
            for start, end, key, first, last in found
        ]
        found_cues = frozenset(found[2] for found in self._cue_index.find(text, tokens))
        other = {
            symbol: len(found_cues & self._other_cues[symbol])
            for symbol in {m.spelling.symbol for m in candidates}
        }
        general = len(found_cues & self._global_cues)
        case_bound = any(m.spelling.kind != "word" for m in candidates)
        caseless = _caseless_lines(text) if case_bound else ([], [])
        exclusions: dict[str, list[tuple[int, int]]] = {}
        assets: list[tuple[int, int, str]] = []
        for start, end, key, _, _ in self._exclude_index.find(text, tokens):
            if key in self._asset_keys:
                assets.append((start, end, key))
            for symbol in self._excluded_for.get(key, ()):
                exclusions.setdefault(symbol, []).append((start, end))

        # First pass: case rules, other things and each mention's level.
        staged: list[tuple[_Match, Level | None, str, int]] = []
        for match in candidates:
            level, reason = self._level(reading, match, caseless, exclusions, assets)
            sense = int(
                match.spelling.kind != "word"
                and (nxt := reading.next_word(match)) is not None
                and nxt[1] in self._other_sense_next
            )
            staged.append((match, level, reason, sense))
        anchors = {
            match.spelling.symbol
            for match, level, _, sense in staged
            if level is Level.ALWAYS
            or (level is Level.DEFAULT and other.get(match.spelling.symbol, 0) + sense == 0)
        } | {mention.symbol for mention in compact}
        named_assets = len({key for _, _, key in assets})
        # Second pass: the context scores decide the DEFAULT and CONTEXT mentions.
        out: list[Mention] = []
        for match, level, why, sense in staged:
            symbol = match.spelling.symbol
            counted, reason = level is Level.ALWAYS, why
            if level is Level.DEFAULT or level is Level.CONTEXT:
                against = other.get(symbol, 0) + sense
                # What must be beaten: the other sense, strictly for a CONTEXT mention.
                bar = against + 1 if level is Level.CONTEXT else against
                crypto = (
                    general
                    + len(found_cues & self._coin_cues.get(symbol, frozenset()))
                    + len(anchors - {symbol})
                    + named_assets
                )
                if exact or crypto < bar:
                    crypto += self._price_next(text, match.end)
                # A weak cue: a market move says nothing against a cue of the other sense
                # ("Polygon drops review scores").
                if against == 0 and (exact or crypto < bar):
                    crypto += self._market_next(reading, match)
                counted = crypto >= bar
                reason = f"{level.value}: crypto {crypto} vs other sense {against}"
            out.append(Mention(symbol, match.start, match.end, match.text, counted, reason))
        if compact:
            out = sorted(out + compact, key=lambda mention: mention.start)
        return out

    def _compact_pairs(self, text: str) -> list[Mention]:
        """The bases of pairs written as one word in capitals: "BTCUSDT" (the quote is a unit)."""
        if self._compact_re is None:
            return []
        return [
            Mention(
                self._compact_symbol[found.group(1)],
                found.start(1),
                found.end(1),
                found.group(1),
                True,
                f"the base of the pair {found.group()}",
            )
            for found in self._compact_re.finditer(text)
        ]

    def _level(
        self,
        reading: _Reading,
        match: _Match,
        caseless: tuple[list[tuple[int, int]], list[tuple[int, int]]],
        exclusions: dict[str, list[tuple[int, int]]],
        assets: list[tuple[int, int, str]],
    ) -> tuple[Level | None, str]:
        """Case rules, other things, pair quotes, then what the mention needs to count."""
        spelling, start, end, text = match.spelling, match.token_start, match.end, reading.text
        dollar = match.dollar
        title_ticker = (
            spelling.kind == "ticker"
            and not (dollar or spelling.any_case or match.token.isupper())
            and _title_word(match.token)
        )
        priced = title_ticker and bool(self._price_next(text, end))
        shouted, lowered = caseless
        rejected = _rejected_case(match.token, spelling, dollar, priced)
        # A line written all in lower case: a name's case tells nothing, context decides. (Not
        # a ticker's: "sol", "dot", "link" in lower case are the words far more often.)
        lower_case_read = (
            bool(rejected)
            and spelling.kind == "name"
            and any(lo <= start < hi for lo, hi in lowered)
        )
        if lower_case_read:
            rejected = ""
        for lo, hi in exclusions.get(spelling.symbol, ()):
            if lo <= start and end <= hi:
                rejected = f"inside the exclusion {text[lo:hi]!r}"
        for lo, hi, _ in assets:
            if lo <= start and end <= hi:
                rejected = f"inside another asset's name {text[lo:hi]!r}"
        if not rejected and not dollar:
            rejected = self._another_thing(reading, match)
        if (
            not rejected
            and spelling.kind == "ticker"
            and _PAIR_BASE.search(text, max(0, start - 14), start)
        ):
            rejected = "the quote of a trading pair (the unit, not the subject)"
        if rejected:
            return None, rejected
        if dollar or (spelling.kind == "word" and not spelling.needs_context):
            return Level.ALWAYS, "$-prefixed" if dollar else "name"
        in_capitals = any(lo <= start < hi for lo, hi in shouted)
        if (
            spelling.needs_context
            or title_ticker
            or lower_case_read
            or (spelling.kind == "ticker" and not spelling.any_case and in_capitals)
        ):
            return Level.CONTEXT, ""
        return Level.DEFAULT, ""

    def _another_thing(self, reading: _Reading, match: _Match) -> str:
        """Why the words next to the mention make it another thing's name ("" if they don't)."""
        nxt = reading.next_word(match)
        if nxt is not None and nxt[1] in self._entity_words and nxt[0][:1].isupper():
            return f"the name of another entity ({match.token} {nxt[0]})"
        if match.spelling.kind == "ticker" and reading.listed(match.first, self._listing_prefixes):
            return "a share's ticker on a stock exchange"
        # Walk back over derivative prefixes ("Wrapped Staked ETH") to the word before them.
        # "Wrapped"/"Bridged" always make another token; "Staked" only after a brand or
        # another prefix ("Lido Staked ETH", "Liquid Staked ETH": "Staked ETH hits record" is
        # the coin).
        index, prefixes, always = match.first, 0, False
        while (
            prefixes < _MAX_PREFIXES
            and (word := reading.before(index)) is not None
            and (word[2] in self._derivative_prefixes or word[2] in self._branded_prefixes)
        ):
            index, prefixes = word[0], prefixes + 1
            always = always or word[2] in self._derivative_prefixes
        branded = (
            (word := reading.before(index)) is not None
            and word[1][:1].isupper()
            and word[2] not in _FUNCTION_WORDS
        )
        if always or prefixes >= 2 or (prefixes and branded):
            start = reading.tokens[word[0] if branded and word else index][0]
            return f"a derivative token ({reading.text[start : match.end]})"
        return ""

    def _market_next(self, reading: _Reading, match: _Match) -> int:
        """1 when a market move word follows the mention in its clause ("Ether slips")."""
        if not self._market_words:
            return 0
        return int(any(w in self._market_words for w in reading.following(match, _MARKET_REACH)))

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
