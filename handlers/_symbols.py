"""The one symbol canonicaliser: coins, quote currencies, pairs and prose mentions (tags).

Built from the parsed TOML of ``infra/coins.toml`` by :meth:`CoinTable.from_mapping`
(the caller reads the file; this module does no I/O).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NoReturn

import msgspec

from handlers._errors import HandlerConfigError
from handlers._tags import Tagger, TaggingRules

_SYMBOL = re.compile(r"[A-Z0-9]{1,12}")
_SPLIT = re.compile(r"([A-Za-z0-9]{1,16})[/-]([A-Za-z0-9]{1,16})")
_COMPACT = re.compile(r"[A-Za-z0-9]{2,24}")
_SPACES = re.compile(r"\s+")
_MAX_PAIR_TEXT = 40
_PAIR_MEMO_SIZE = 4096
"""Distinct pair texts remembered by :meth:`CoinTable.pair` before the memo starts over."""
_PAIR_MEMO_KEY = 64
"""Longer pair texts are not remembered (they are malformed anyway)."""
_MAX_WORD = 64

DEFAULT_TRACKED: tuple[str, ...] = (
    "BTC/USD",
    "ETH/USD",
    "SOL/USD",
    "ADA/USD",
    "DOT/USD",
    "LINK/USD",
)
_TOP_KEYS = frozenset({"coins", "quotes", "tracked", "tagging"})
_COIN_KEYS = frozenset(
    {
        "name",
        "words",
        "names",
        "tickers",
        "aliases",
        "ticker_any_case",
        "needs_context",
        "exclude",
        "cues",
        "other_cues",
    }
)
_TAGGING_PHRASES = ("crypto_cues", "other_cues", "other_assets")
"""[tagging] keys holding phrases; the others hold single words."""
_TAGGING_WORDS = (
    "market_words",
    "entity_words",
    "derivative_prefixes",
    "branded_prefixes",
    "other_sense_next",
    "listing_prefixes",
)
_TAGGING_KEYS = frozenset((*_TAGGING_PHRASES, *_TAGGING_WORDS))
_SINGLE_WORD = re.compile(r"[a-z0-9]+")


class Coin(msgspec.Struct, frozen=True, kw_only=True):
    """One coin of the table (the keys of ``infra/coins.toml``; tagging rules in ``_tags``).

    ``words`` are prose names no other thing has, matched in any case as whole words;
    ``names`` are names that are also ordinary words ("ether", "Ripple"; capitalised
    entries must be capitalised in the text); ``tickers`` (always including
    ``symbol``) are matched in prose only when written in upper case or prefixed with
    ``$``, unless ``ticker_any_case``; ``aliases`` are accepted by
    :meth:`CoinTable.coin` but never searched in prose. ``needs_context`` lists the
    names/tickers that count only next to crypto context, ``exclude`` the phrases
    in which the coin's spellings mean something else, ``cues`` and ``other_cues``
    the words that signal the crypto sense and the other sense.
    """

    symbol: str
    name: str
    words: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    tickers: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    ticker_any_case: bool = False
    needs_context: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    cues: tuple[str, ...] = ()
    other_cues: tuple[str, ...] = ()

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every spelling :meth:`CoinTable.coin` accepts for this coin."""
        return (self.symbol, self.name, *self.words, *self.names, *self.tickers, *self.aliases)


def _bad(message: str) -> NoReturn:
    raise HandlerConfigError(message)


_WORD = re.compile(r"[a-z0-9][a-z0-9 .'&-]*")


def _str_list(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        _bad(f"{where} must be a list of strings")
    items = tuple(v.strip() for v in value)
    for item in items:
        if not item or len(item) > _MAX_WORD:
            _bad(f"{where} has an empty or over-long entry {item!r}")
    return items


def _words(value: object, where: str) -> tuple[str, ...]:
    words = tuple(_SPACES.sub(" ", w.lower()) for w in _str_list(value, where))
    for word in words:
        if not _WORD.fullmatch(word):
            _bad(f"{where}: {word!r} must be plain ASCII letters, digits, spaces or .'&-")
    return words


_PHRASE = re.compile(r"[\w .'&$%/-]+")


def _names(value: object, where: str) -> tuple[str, ...]:
    names = tuple(_SPACES.sub(" ", n) for n in _str_list(value, where))
    for name in names:
        if not _WORD.fullmatch(name.lower()):
            _bad(f"{where}: {name!r} must be plain ASCII letters, digits, spaces or .'&-")
    return names


def _phrases(value: object, where: str) -> tuple[str, ...]:
    phrases = tuple(_SPACES.sub(" ", p) for p in _str_list(value, where))
    for phrase in phrases:
        if not _PHRASE.fullmatch(phrase):
            _bad(f"{where}: {phrase!r} must be letters, digits, spaces or .'&$%/-")
    return phrases


def _single_words(value: object, where: str) -> tuple[str, ...]:
    words = tuple(w.lower() for w in _str_list(value, where))
    for word in words:
        if not _SINGLE_WORD.fullmatch(word):
            _bad(f"{where}: {word!r} must be one word of ASCII letters or digits")
    return words


def _tagging(tagging: Mapping[str, Any]) -> TaggingRules:
    """The table-wide tagging rules of ``[tagging]`` (see ``handlers._tags``)."""
    phrases = {key: _phrases(tagging.get(key), f"tagging.{key}") for key in _TAGGING_PHRASES}
    words = {key: _single_words(tagging.get(key), f"tagging.{key}") for key in _TAGGING_WORDS}
    crypto = {p.lower() for p in phrases["crypto_cues"]}
    for cue in phrases["other_cues"]:
        if cue.lower() in crypto:
            _bad(f"tagging.other_cues: {cue!r} is also a crypto cue")
    return TaggingRules(**phrases, **words)


def _symbol(value: object, where: str) -> str:
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value):
        _bad(f"{where}: symbol {value!r} must match [A-Z0-9]{{1,12}}")
    return value


def _coin(symbol: str, entry: object) -> Coin:
    where = f"coins.{symbol}"
    if not isinstance(entry, Mapping):
        _bad(f"{where} must be a table")
    unknown = sorted(set(entry) - _COIN_KEYS)
    if unknown:
        _bad(f"{where} has unknown key(s) {', '.join(unknown)} (allowed: {sorted(_COIN_KEYS)})")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        _bad(f"{where}.name must be a non-empty string")
    any_case = entry.get("ticker_any_case", False)
    if not isinstance(any_case, bool):
        _bad(f"{where}.ticker_any_case must be true or false")
    tickers = _str_list(entry.get("tickers"), f"{where}.tickers")
    for ticker in tickers:
        _symbol(ticker, f"{where}.tickers")
    if symbol not in tickers:
        tickers = (symbol, *tickers)
    words = _words(entry.get("words"), f"{where}.words")
    names = _names(entry.get("names"), f"{where}.names")
    needs = _str_list(entry.get("needs_context"), f"{where}.needs_context")
    spelled = {s.lower() for s in (*words, *names, *tickers)}
    for item in needs:
        if _SPACES.sub(" ", item.lower()) not in spelled:
            _bad(f"{where}.needs_context: {item!r} is none of the coin's words, names or tickers")
    return Coin(
        symbol=symbol,
        name=name.strip(),
        words=words,
        names=names,
        tickers=tickers,
        aliases=_str_list(entry.get("aliases"), f"{where}.aliases"),
        ticker_any_case=any_case,
        needs_context=needs,
        exclude=_phrases(entry.get("exclude"), f"{where}.exclude"),
        cues=_phrases(entry.get("cues"), f"{where}.cues"),
        other_cues=_phrases(entry.get("other_cues"), f"{where}.other_cues"),
    )


def _add_alias(table: dict[str, str], alias: str, symbol: str, where: str) -> None:
    key = alias.lower()
    other = table.get(key)
    if other is not None and other != symbol:
        _bad(f"{where}: alias {alias!r} maps to both {other} and {symbol}")
    table[key] = symbol


class CoinTable:
    """Immutable coin/quote alias table; every symbol in the pipeline goes through it."""

    __slots__ = (
        "_asset_alias",
        "_coin_alias",
        "_coins",
        "_defaults",
        "_pair_memo",
        "_quote_alias",
        "_quotes",
        "_tagger",
        "_tracked",
        "_tracking",
    )

    _asset_alias: Mapping[str, str]
    _coin_alias: Mapping[str, str]
    _coins: tuple[Coin, ...]
    _defaults: tuple[str, ...]
    """The ``tracked`` pairs of the file: the default pairs, and each coin's pairs."""
    _pair_memo: dict[str, str]
    _quote_alias: Mapping[str, str]
    _quotes: tuple[str, ...]
    _tagger: Tagger
    _tracked: tuple[str, ...]
    _tracking: frozenset[str] | None
    """The coins :meth:`tracking` restricted the table to (``None``: the file's defaults)."""

    def __init__(
        self,
        coins: Iterable[Coin],
        quotes: Mapping[str, Iterable[str]],
        tracked: Iterable[str] = DEFAULT_TRACKED,
        tagging: TaggingRules | None = None,
    ) -> None:
        coin_tuple = tuple(coins)
        if not coin_tuple:
            _bad("coins must define at least one coin")
        coin_alias: dict[str, str] = {}
        for coin in coin_tuple:
            _symbol(coin.symbol, "coins")
            where = f"coins.{coin.symbol}"
            if coin.symbol.lower() in coin_alias:
                _bad(f"{where}: symbol clashes with an alias of {coin_alias[coin.symbol.lower()]}")
            for alias in coin.spellings:
                _add_alias(coin_alias, alias, coin.symbol, where)
        quote_alias: dict[str, str] = {}
        for quote, aliases in quotes.items():
            _symbol(quote, "quotes")
            for alias in (quote, *aliases):
                if not isinstance(alias, str) or not alias.strip():
                    _bad(f"quotes.{quote} aliases must be non-empty strings")
                _add_alias(quote_alias, alias.strip(), quote, f"quotes.{quote}")
                clash = coin_alias.get(alias.strip().lower())
                if clash is not None and clash != quote:
                    _bad(f"quotes.{quote}: alias {alias!r} is also an alias of coin {clash}")
        asset_alias = {**coin_alias, **quote_alias}
        setter = object.__setattr__
        setter(self, "_coins", coin_tuple)
        setter(self, "_quotes", tuple(quotes))
        setter(self, "_coin_alias", MappingProxyType(coin_alias))
        setter(self, "_quote_alias", MappingProxyType(quote_alias))
        setter(self, "_asset_alias", MappingProxyType(asset_alias))
        setter(self, "_tagger", Tagger(coin_tuple, tagging, quotes))
        setter(self, "_pair_memo", {})
        canonical: list[str] = []
        for item in tracked:
            pair = self.pair(item)
            if pair != item:
                hint = f" (use {pair!r})" if pair else ""
                _bad(f"tracked pair {item!r} is not a canonical pair{hint}")
            canonical.append(pair)
        setter(self, "_defaults", tuple(canonical))
        setter(self, "_tracked", tuple(canonical))
        setter(self, "_tracking", None)

    @property
    def coins(self) -> tuple[Coin, ...]:
        """The coins, in configuration order."""
        return self._coins

    @property
    def quotes(self) -> tuple[str, ...]:
        """Canonical quote currencies (``USD``, ``EUR``, ...)."""
        return self._quotes

    @property
    def tracked(self) -> tuple[str, ...]:
        """Canonical pairs the producers subscribe to: the tracked coins' pairs.

        The file's ``tracked`` list, or, for a table :meth:`tracking` some coins, the
        :meth:`pairs_of` each of them.
        """
        return self._tracked

    @property
    def default_coins(self) -> tuple[str, ...]:
        """The coins tracked when nothing says otherwise: the bases of the file's ``tracked``."""
        return tuple(dict.fromkeys(pair.split("/", 1)[0] for pair in self._defaults))

    @property
    def tracked_coins(self) -> tuple[str, ...]:
        """The coins this table tracks (:meth:`tracking`), else :attr:`default_coins`."""
        if self._tracking is None:
            return self.default_coins
        return tuple(c.symbol for c in self._coins if c.symbol in self._tracking)

    def pairs_of(self, symbol: str) -> tuple[str, ...]:
        """A coin's pairs: those of the file's ``tracked`` list, else ``SYMBOL/USD``."""
        listed = tuple(p for p in self._defaults if p.split("/", 1)[0] == symbol)
        return listed or (f"{symbol}/USD",)

    def tracking(self, symbols: Iterable[str]) -> CoinTable:
        """This table tracking only ``symbols`` (canonical coins of the table).

        Its :attr:`tracked` pairs are theirs (:meth:`pairs_of`, in table order) and
        :meth:`mentions` names only them; lookups (:meth:`coin`, :meth:`pair`) still
        know every coin, and the tagger still reads every coin's rules (another coin
        named in a text is crypto context even when it is not tracked). Shares
        everything else with this table: cheap enough to make on every change.
        """
        wanted = frozenset(symbols)
        unknown = sorted(wanted - {c.symbol for c in self._coins})
        if unknown:
            _bad(f"cannot track {', '.join(unknown)}: not in the coin table")
        view = object.__new__(CoinTable)
        setter = object.__setattr__
        for name in CoinTable.__slots__:
            setter(view, name, getattr(self, name))
        setter(view, "_tracking", wanted)
        setter(
            view,
            "_tracked",
            tuple(p for c in self._coins if c.symbol in wanted for p in self.pairs_of(c.symbol)),
        )
        return view

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"CoinTable is immutable (cannot set {name!r})")

    def __repr__(self) -> str:
        return f"CoinTable(coins={[c.symbol for c in self.coins]}, tracked={list(self.tracked)})"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CoinTable:
        """Build the table from parsed TOML; raises ``ValueError`` (HandlerConfigError)."""
        if not isinstance(data, Mapping):
            _bad(f"coin table must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            allowed = ", ".join(sorted(_TOP_KEYS))
            _bad(f"unknown top-level key(s) {', '.join(map(str, unknown))} (allowed: {allowed})")
        coins = data.get("coins")
        if not isinstance(coins, Mapping) or not coins:
            _bad("[coins] must be a non-empty table of coin entries")
        quotes = data.get("quotes", {})
        if not isinstance(quotes, Mapping):
            _bad("[quotes] must be a table of SYMBOL = [aliases]")
        quote_map = {
            _symbol(symbol, "quotes"): _str_list(aliases, f"quotes.{symbol}")
            for symbol, aliases in quotes.items()
        }
        tracked = data.get("tracked", DEFAULT_TRACKED)
        tagging = data.get("tagging", {})
        if not isinstance(tagging, Mapping):
            _bad("[tagging] must be a table")
        unknown = sorted(set(tagging) - _TAGGING_KEYS)
        if unknown:
            _bad(f"[tagging] has unknown key(s) {', '.join(map(str, unknown))}")
        return cls(
            coins=[_coin(_symbol(symbol, "coins"), entry) for symbol, entry in coins.items()],
            quotes=quote_map,
            tracked=_str_list(tracked, "tracked"),
            tagging=_tagging(tagging),
        )

    # -- lookups -----------------------------------------------------------------

    def coin(self, text: object) -> str | None:
        """Canonical coin symbol for a name, ticker or alias (any case, optional ``$``)."""
        if not isinstance(text, str):
            return None
        key = text.strip()
        key = key.removeprefix("$")
        return self._coin_alias.get(_SPACES.sub(" ", key.lower()))

    def _asset(self, token: str) -> str | None:
        known = self._asset_alias.get(token.lower())
        if known is not None:
            return known
        upper = token.upper()
        return upper if _SYMBOL.fullmatch(upper) else None

    def pair(self, text: object) -> str | None:
        """Canonical ``BASE/QUOTE`` for ``XBT/USD``, ``btc-usd``, ``XBTUSD``, ``XXBTZUSD``...

        Unknown but well-formed symbols in slash/dash form pass through upper-cased;
        compact forms need a known base and a known quote. Malformed text gives ``None``.
        """
        if not isinstance(text, str):
            return None
        if type(text) is not str or len(text) > _PAIR_MEMO_KEY:
            return self._pair(text)
        # A stream repeats a handful of pair texts: remember the answers ("" for None),
        # a bounded number of short ones. The table is immutable, so they never go
        # stale; a race between threads at worst computes one twice.
        memo = self._pair_memo
        known = memo.get(text)
        if known is None:
            if len(memo) >= _PAIR_MEMO_SIZE:
                memo.clear()
            known = memo[text] = self._pair(text) or ""
        return known or None

    def _pair(self, text: str) -> str | None:
        raw = text.strip()
        if len(raw) > _MAX_PAIR_TEXT:
            return None
        split = _SPLIT.fullmatch(raw)
        if split is not None:
            base, quote = self._asset(split[1]), self._asset(split[2])
        elif _COMPACT.fullmatch(raw):
            base, quote = self._split_compact(raw.lower())
        else:
            return None
        if base is None or quote is None or base == quote:
            return None
        return f"{base}/{quote}"

    def _split_compact(self, lowered: str) -> tuple[str | None, str | None]:
        best: tuple[str | None, str | None] = (None, None)
        best_len = 0
        for cut in range(1, len(lowered)):
            base = self._asset_alias.get(lowered[:cut])
            quote = self._quote_alias.get(lowered[cut:])
            if base and quote and base != quote and len(lowered) - cut > best_len:
                best, best_len = (base, quote), len(lowered) - cut
        return best

    def base(self, pair: object) -> str | None:
        """The canonical base symbol of a pair (``"XBT/USD"`` -> ``"BTC"``)."""
        canonical = self.pair(pair)
        return None if canonical is None else canonical.split("/", 1)[0]

    @property
    def tagger(self) -> Tagger:
        """The coin tagger built from this table (see :mod:`handlers._tags`)."""
        return self._tagger

    def mentions(self, text: object) -> tuple[str, ...]:
        """Coins the prose is about, in order of first mention, without duplicates.

        The one tagger of the pipeline (:class:`handlers._tags.Tagger`): whole-word
        names and tickers with case rules; other things named like a coin (other
        assets such as "Bitcoin Cash", exclusions such as "ETH Zurich", companies such
        as "LINK Mobility", derivatives such as "Lido Staked ETH"); and context rules
        for spellings that are also ordinary words or acronyms, all read from the coin
        table (its coins and ``[tagging]``). A table :meth:`tracking` some coins names
        only those.
        """
        found = self._tagger.tags(text)
        if self._tracking is None:
            return found
        return tuple(symbol for symbol in found if symbol in self._tracking)
