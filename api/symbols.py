"""Path and query symbols -> canonical coins and pairs, through the one CoinTable.

SQL compares canonical values with ``=`` so the ``(symbol, timestamp DESC)``
indexes serve every lookup; nothing is lower-cased in the database.
"""

from __future__ import annotations

from api.errors import BadRequest, NotFound
from handlers import CoinTable

MAX_SYMBOL_CHARS = 40


class Symbols:
    """Canonicalises user input and says 404 for what the coin table does not know."""

    def __init__(self, table: CoinTable) -> None:
        self.table = table
        self.coin_symbols: frozenset[str] = frozenset(c.symbol for c in table.coins)
        self.quotes: frozenset[str] = frozenset(table.quotes)

    def coin(self, raw: str, parameter: str = "symbol") -> str:
        """``xbt`` / ``bitcoin`` / ``BTC`` -> ``BTC``; unknown -> 404."""
        symbol = self.table.coin(raw) if len(raw) <= MAX_SYMBOL_CHARS else None
        if symbol is None:
            raise NotFound(
                f"unknown crypto symbol {raw[:MAX_SYMBOL_CHARS]!r}; known symbols: "
                f"{', '.join(sorted(self.coin_symbols))} (names and aliases such as "
                "'bitcoin' or 'xbt' work too)",
                parameter=parameter,
            )
        return symbol

    def trackable(self, raw: str, parameter: str = "symbol") -> str:
        """The coin a configuration write names; unknown -> 400 saying how to add it.

        Tracking needs what only the coin table holds: how the coin is named in the
        news (its words, names and tickers, and what they must not be confused with),
        its aliases and its pairs. So a coin is added there first, then configured.
        """
        symbol = self.table.coin(raw) if len(raw) <= MAX_SYMBOL_CHARS else None
        if symbol is None:
            shown = raw[:MAX_SYMBOL_CHARS]
            entry = shown.upper() if shown.isalnum() else "SYMBOL"
            raise BadRequest(
                f"{shown!r} is not in the coin table, so it cannot be tracked. To add it: "
                f"give it a [coins.{entry}] entry in the coin table (infra/coins.toml, or the "
                "file CRYPTOVIZ_COINS_FILE names: its name, tickers and the words that name "
                "it in the news, as the file's header explains), list its pairs under "
                f"`tracked` unless {entry}/USD is the one, restart the programs (make up), "
                f"then send this request again. Coins the table knows: "
                f"{', '.join(sorted(self.coin_symbols))}",
                parameter=parameter,
            )
        return symbol

    def pair(self, raw: str, parameter: str = "pair") -> str:
        """``XBT/USD``, ``btc-usd``, ``XBTUSD`` -> ``BTC/USD``; malformed: 400, unknown: 404."""
        pair = self.table.pair(raw) if len(raw) <= MAX_SYMBOL_CHARS else None
        if pair is None:
            raise BadRequest(
                f"{parameter}={raw[:MAX_SYMBOL_CHARS]!r} is not a pair; expected BASE/QUOTE "
                "such as BTC/USD (aliases such as XBT/USD work too)",
                parameter=parameter,
            )
        base, quote = pair.split("/", 1)
        if base not in self.coin_symbols or quote not in self.quotes:
            raise NotFound(
                f"unknown pair {raw[:MAX_SYMBOL_CHARS]!r}: the base must be a known coin "
                f"({', '.join(sorted(self.coin_symbols))}) and the quote one of "
                f"{', '.join(sorted(self.quotes))}",
                parameter=parameter,
            )
        return pair

    def path_pair(self, base: str, quote: str) -> str:
        """The pair named by ``{base}/{quote}`` path segments."""
        return self.pair(f"{base}/{quote}", parameter="pair")

    def pairs_of(self, symbol: str) -> tuple[str, ...]:
        """The pairs of a coin (``BTC`` -> ``("BTC/USD",)``): :meth:`CoinTable.pairs_of`."""
        return self.table.pairs_of(symbol)
