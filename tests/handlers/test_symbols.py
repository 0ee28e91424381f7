"""The canonicaliser: coins, pairs, prose mentions (with false positives) and config errors."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from handlers import Coin, CoinTable, HandlerConfigError, HandlerError
from tests.handlers._support import COIN_DATA, COINS


@pytest.mark.parametrize(
    ("text", "symbol"),
    [
        ("bitcoin", "BTC"),
        ("Bitcoin", "BTC"),
        ("btc", "BTC"),
        ("XBT", "BTC"),
        ("xxbt", "BTC"),
        (" $btc ", "BTC"),
        ("ether", "ETH"),
        ("XETH", "ETH"),
        ("solana", "SOL"),
        ("ada", "ADA"),
        ("Polkadot", "DOT"),
        ("chainlink", "LINK"),
        ("ripple", "XRP"),
        ("xdg", "DOGE"),
        ("dogecoin", "DOGE"),
        ("MATIC", "POL"),
        ("polygon", "POL"),
        ("avalanche", "AVAX"),
        ("monero", "XMR"),
        ("tether", "USDT"),
        ("USD  Coin", "USDC"),
        ("usd", None),
        ("zusd", None),
        ("dogecoins", None),
        ("", None),
        (None, None),
        (5, None),
    ],
)
def test_coin(text: object, symbol: str | None) -> None:
    assert COINS.coin(text) == symbol


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("BTC/USD", "BTC/USD"),
        ("XBT/USD", "BTC/USD"),
        ("xbt/usd", "BTC/USD"),
        ("BTC-USD", "BTC/USD"),
        (" eth-eur ", "ETH/EUR"),
        ("XBTUSD", "BTC/USD"),
        ("XXBTZUSD", "BTC/USD"),
        ("XETHZEUR", "ETH/EUR"),
        ("ethusd", "ETH/USD"),
        ("XBTUSDT", "BTC/USDT"),
        ("USDTUSD", "USDT/USD"),
        ("SOLXBT", "SOL/BTC"),
        ("ADA/XBT", "ADA/BTC"),
        ("MATIC/USD", "POL/USD"),
        ("WAVES/EUR", "WAVES/EUR"),
        ("KSM/XBT", "KSM/BTC"),
        ("waves/eur", "WAVES/EUR"),
        ("1INCH/USD", "1INCH/USD"),
        ("BTC/BTC", None),
        ("XBT/BTC", None),
        ("BTCUSD/", None),
        ("/USD", None),
        ("BTC//USD", None),
        ("BTC/USD/EUR", None),
        ("BTC USD", None),
        ("BTC/US D", None),
        ("ABCDEFGHIJKLM/USD", None),
        ("BTC/" + "U" * 17, None),
        ("WAVESEUR", None),
        ("BTC", None),
        ("BTC/USD.d", None),
        ("BTC/€", None),
        ("\uff22\uff34\uff23/USD", None),  # full-width letters
        ("B" * 41, None),
        ("", None),
        (None, None),
        (["BTC/USD"], None),
    ],
)
def test_pair(text: object, pair: str | None) -> None:
    assert COINS.pair(text) == pair


@pytest.mark.parametrize(
    ("text", "base"),
    [("XBT/USD", "BTC"), ("WAVES/EUR", "WAVES"), ("XXBTZUSD", "BTC"), ("nope", None)],
)
def test_base(text: str, base: str | None) -> None:
    assert COINS.base(text) == base


MENTIONS: list[tuple[str, tuple[str, ...]]] = [
    # Full names: any case, whole words only.
    ("Bitcoin hits new all-time high", ("BTC",)),
    ("bitcoin and ETHEREUM", ("BTC", "ETH")),
    ("Bitcoin's rally; Ethereum-based apps", ("BTC", "ETH")),
    ("Ether slips as Solana and Cardano climb", ("ETH", "SOL", "ADA")),
    ("Polkadot, Chainlink and Dogecoin", ("DOT", "LINK", "DOGE")),
    ("Circle's USD\n Coin supply", ("USDC",)),
    ("Bitcoiners accuse JPMorgan", ("BTC",)),
    ("Ethereums", ()),
    ("XRPL amendment passes", ("XRP",)),
    # Short tickers: upper case or $-prefixed only...
    ("SOL breaks out", ("SOL",)),
    ("buying $sol and $Link", ("SOL", "LINK")),
    ("LINK and SOL lead", ("LINK", "SOL")),
    ("POL replaces MATIC", ("POL",)),
    # ...unless the ticker is no English word.
    ("btc and eth ETFs", ("BTC", "ETH")),
    (
        "xbt, ltc, xmr, xrp, avax, usdt and usdc",
        ("BTC", "LTC", "XMR", "XRP", "AVAX", "USDT", "USDC"),
    ),
    # Tickers that are acronyms of something else need crypto context.
    ("ADA holders vote", ("ADA",)),
    ("DOGE pumps", ("DOGE",)),
    ("DOGE cuts hit federal agencies", ()),
    ("ADA lawsuit settled", ()),
    ("DOT fines an airline", ()),
    ("ADA and DOT", ()),  # a disability law and a transport department can meet too
    ("ADA and DOT rally with SOL", ("ADA", "DOT", "SOL")),  # another coin is context
    ("DOT jumps 12%", ("DOT",)),  # so is a price move right after the ticker
    ("DOGE/USD breaks out", ("DOGE",)),  # and a pair
    ("$ADA", ("ADA",)),
    # False positives that must not count.
    ("something", ()),
    ("a new method", ()),
    ("automatic and Automatic", ()),
    ("the solution is", ()),
    ("Ada Lovelace wrote the first program", ()),
    ("ada in lower case", ()),
    ("the dot-com bubble", ()),
    ("Dot your i's", ()),
    ("click the link below", ()),
    ("Link in bio", ()),
    ("sol y sombra", ()),
    ("Sol the sun", ()),
    ("a pol said", ()),
    ("the doge of Venice", ()),
    ("matic", ()),
    ("a ripple effect", ()),
    ("an avalanche of liquidations", ()),
    ("tethered balloon", ()),
    ("Ethernet cable", ()),
    ("ETHICS panel", ()),
    ("SOLUTIONS", ()),
    ("ADAPT", ()),
    ("the_SOL_var", ()),
    ("2ETH", ()),
    ("ETH2", ()),
    ("$", ()),
    ("", ()),
    # Order of first mention, no duplicates.
    ("ETH, then BTC, then ETH again and bitcoin", ("ETH", "BTC")),
    ("$SOL SOL solana", ("SOL",)),
]


@pytest.mark.parametrize(("text", "expected"), MENTIONS)
def test_mentions(text: str, expected: tuple[str, ...]) -> None:
    assert COINS.mentions(text) == expected


# The kinds of false friends of issue 13, one table per kind (the labelled set with
# real headlines is tests/fixtures/tags/headlines.jsonl, scored in test_tag_set.py).
CONTAINED_NAMES: list[tuple[str, tuple[str, ...]]] = [
    ("Bitcoin Cash jumps 12%", ()),
    ("bitcoin cash miners vote", ()),
    ("Bitcoin-Cash fork anniversary", ()),
    ("Bitcoin SV developers launch Teranode", ()),
    ("Bitcoin Gold delisted", ()),
    ("Coinbase delists Wrapped Bitcoin (WBTC)", ()),
    ("Ethereum Classic hit by a 51% attack", ()),
    ("Wrapped Ether supply rises", ()),
    ("Tether Gold supply tops $1 billion", ()),
    ("Litecoin Cash abandoned", ()),
    ("Bitcoin ETF inflows hit a record", ("BTC",)),
    ("Bitcoin beats Bitcoin Cash", ("BTC",)),
    ("Bitcoin Cash and Bitcoin diverge", ("BTC",)),
    ("Ethereum outpaces Ethereum Classic", ("ETH",)),
    ("Bitcoin cash-and-carry trade yields shrink", ("BTC",)),  # a longer name wins
    ("Wrapped Bitcoin on Ethereum", ("ETH",)),
]
ACRONYMS: list[tuple[str, tuple[str, ...]]] = [
    ("ETH Zurich researchers unveil a robot", ()),
    ("ETH Zürich spin-off raises $10 million", ()),
    ("Study from ETH Zurich finds crypto mining heat could warm homes", ()),
    ("Swiss university ETH opens a blockchain research centre", ()),
    ("ETH Zurich team finds a flaw in Ethereum light clients", ("ETH",)),
    ("ETH rises 5% as a Zurich-based fund buys", ("ETH",)),
    ("DOJ settles ADA lawsuit over accessible rooms", ()),
    ("Crypto exchange sued under the ADA over an inaccessible app", ()),
    ("American Diabetes Association (ADA) updates its standards", ()),
    ("Grayscale files for a spot ADA ETF", ("ADA",)),
    ("DOT proposes a rule on airline refunds", ()),
    ("Transportation Secretary says DOT will review ADA rules for airlines", ()),
    ("DOT staking yields climb as parachain slots return", ("DOT",)),
    ("Musk's DOGE team gains access to Treasury systems", ()),
    ("DOGE targets SEC crypto unit in cost review", ()),
    ("DOGE price holds $0.20 as memecoin traders return", ("DOGE",)),
    ("LTC insurance premiums jump for retirees", ()),
]
COMMON_WORDS: list[tuple[str, tuple[str, ...]]] = [
    ("Scientists find a link between sleep and memory", ()),
    ("Chainlink fence sales climb", ()),
    ("Perseverance rover marks sol 1,000 on Mars", ()),
    ("Lost into the ether: old websites vanish", ()),
    ("One year on, the ether still hums with rumours", ()),
    ("bitcoin and ether slide", ("BTC", "ETH")),
    ("Ether drops below $3,000", ("ETH",)),
    ("How to tether your phone to a laptop", ()),
    ("How To Tether Your iPhone To A Mac", ()),
    ("Tether mints $1 billion USDT", ("USDT",)),
    ("Ripple wins partial victory against the SEC", ("XRP",)),
    ("The Ripple Effect Of Higher Rates", ()),
    ("Avalanche kills three skiers in the Alps", ()),
    ("Avalanche network activity hits a record", ("AVAX",)),
    ("Colorado Avalanche beat the Stars", ()),
    ("Area of a regular polygon", ()),
    ("Polygon's best games of the year", ()),
    ("Polygon hits record transactions", ("POL",)),
    ("SOL/USDT forms a bull flag", ("SOL",)),  # the quote of a pair is its unit
]
SHOUTED: list[tuple[str, tuple[str, ...]]] = [
    ("BREAKING: BITCOIN SMASHES $100K", ("BTC",)),
    ("SOL AND ADA LEAD ALTCOIN RALLY", ("SOL", "ADA")),
    ("DOT ANNOUNCES NEW HIGHWAY SAFETY PLAN", ()),
    ("LINK IN BIO: THE CREATOR ECONOMY", ()),
    ("SOL Y SOMBRA: LA CORRIDA", ()),
]


@pytest.mark.parametrize(("text", "expected"), CONTAINED_NAMES + ACRONYMS + COMMON_WORDS + SHOUTED)
def test_false_friends(text: str, expected: tuple[str, ...]) -> None:
    assert COINS.mentions(text) == expected, COINS.tagger.explain(text)


def test_mentions_of_non_text() -> None:
    assert COINS.mentions(None) == ()
    assert COINS.mentions(b"BTC") == ()


def test_table_contents() -> None:
    assert COINS.tracked == ("BTC/USD", "ETH/USD", "SOL/USD", "ADA/USD", "DOT/USD", "LINK/USD")
    symbols = [coin.symbol for coin in COINS.coins]
    for required in ("BTC", "ETH", "SOL", "ADA", "DOT", "LINK", "XRP", "DOGE", "LTC", "POL"):
        assert required in symbols
    assert {"USD", "EUR", "GBP", "CHF", "JPY", "USDT", "USDC", "BTC"} <= set(COINS.quotes)
    assert "BTC" in repr(COINS)
    btc = COINS.coins[0]
    assert btc.symbol == "BTC"
    assert btc.name == "Bitcoin"
    assert btc.tickers == ("BTC", "XBT")
    assert btc.aliases == ("xxbt",)
    assert btc.ticker_any_case
    assert "bitcoin" in btc.words
    assert "eth zurich" in COINS.coins[1].exclude
    assert COINS.mentions("Bitcoin Cash jumps") == ()  # [tagging] other_assets


def test_table_is_immutable() -> None:
    with pytest.raises(AttributeError, match="immutable"):
        COINS.tracked = ()  # type: ignore[misc]


def test_tracking_restricts_pairs_and_mentions_but_not_lookups() -> None:
    assert COINS.default_coins == ("BTC", "ETH", "SOL", "ADA", "DOT", "LINK")
    assert COINS.tracked_coins == COINS.default_coins
    text = "XRP and Solana rally as bitcoin holds"
    assert COINS.mentions(text) == ("XRP", "SOL", "BTC")
    view = COINS.tracking(["XRP", "BTC"])
    # Table order; a coin without pairs in `tracked` gets SYMBOL/USD.
    assert view.tracked_coins == ("BTC", "XRP")
    assert view.tracked == ("BTC/USD", "XRP/USD")
    assert view.mentions(text) == ("XRP", "BTC")
    assert view.coin("solana") == "SOL"
    assert view.pair("XXBTZUSD") == "BTC/USD"
    assert view.pairs_of("SOL") == ("SOL/USD",)
    # The other coins still count as crypto context: "ADA" needs it, and "bitcoin" gives it.
    assert COINS.tracking(["ADA"]).mentions("ADA jumps as bitcoin rallies") == ("ADA",)
    assert COINS.tracking(["ADA"]).mentions("ADA lawsuit against the county") == ()
    assert COINS.tracking([]).tracked == ()
    assert COINS.tracking([]).mentions(text) == ()
    assert COINS.mentions(text) == ("XRP", "SOL", "BTC")  # the original is unchanged
    with pytest.raises(ValueError, match="cannot track PEPE: not in the coin table"):
        COINS.tracking(["BTC", "PEPE"])
    with pytest.raises(AttributeError, match="immutable"):
        view.tracked = ()  # type: ignore[misc]


def test_pairs_of_a_coin_come_from_tracked() -> None:
    table = CoinTable.from_mapping(
        {
            "coins": {"BTC": {"name": "Bitcoin"}, "ETH": {"name": "Ether"}},
            "quotes": {"USD": [], "EUR": []},
            "tracked": ["BTC/USD", "BTC/EUR"],
        }
    )
    assert table.pairs_of("BTC") == ("BTC/USD", "BTC/EUR")
    assert table.pairs_of("ETH") == ("ETH/USD",)
    assert table.default_coins == ("BTC",)
    assert table.tracking(["ETH", "BTC"]).tracked == ("BTC/USD", "BTC/EUR", "ETH/USD")


def test_defaults() -> None:
    table = CoinTable.from_mapping({"coins": {"BTC": {"name": "Bitcoin"}}})
    assert table.tracked == ("BTC/USD", "ETH/USD", "SOL/USD", "ADA/USD", "DOT/USD", "LINK/USD")
    assert table.quotes == ()
    assert table.mentions("BTC and bitcoin") == ("BTC",)
    assert table.pair("BTCUSD") is None  # compact forms need a known quote
    direct = CoinTable([Coin(symbol="ETH", name="Ether")], quotes={"USD": ["zusd"]}, tracked=[])
    assert direct.pair("ETHZUSD") == "ETH/USD"


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(COIN_DATA)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()

CONFIG_ERRORS: list[tuple[Any, str]] = [
    ([], "coin table must be a mapping, got list"),
    (_with(("extra",), 1), "unknown top-level key(s) extra"),
    (_with(("coins",), _DELETE), "[coins] must be a non-empty table"),
    (_with(("coins",), {}), "[coins] must be a non-empty table"),
    (_with(("quotes",), ["USD"]), "[quotes] must be a table"),
    (_with(("quotes", "usd"), []), "quotes: symbol 'usd' must match"),
    (_with(("quotes", "EUR"), "zeur"), "quotes.EUR must be a list of strings"),
    (_with(("quotes", "EUR"), ["xbt"]), "quotes.EUR: alias 'xbt' is also an alias of coin BTC"),
    (_with(("quotes", "GBP"), ["zeur"]), "alias 'zeur' maps to both EUR and GBP"),
    (_with(("quotes", "GBP"), ["bitcoin"]), "alias 'bitcoin' is also an alias of coin BTC"),
    (_with(("coins", "btc"), {"name": "x"}), "coins: symbol 'btc' must match"),
    (_with(("coins", "BTC"), "Bitcoin"), "coins.BTC must be a table"),
    (_with(("coins", "BTC", "colour"), "orange"), "coins.BTC has unknown key(s) colour"),
    (_with(("coins", "BTC", "name"), ""), "coins.BTC.name must be a non-empty string"),
    (_with(("coins", "BTC", "ticker_any_case"), "yes"), "coins.BTC.ticker_any_case must be true"),
    (_with(("coins", "BTC", "tickers"), ["btc"]), "coins.BTC.tickers: symbol 'btc' must match"),
    (_with(("coins", "BTC", "words"), "bitcoin"), "coins.BTC.words must be a list of strings"),
    (_with(("coins", "BTC", "words"), ["  "]), "coins.BTC.words has an empty or over-long entry"),
    (_with(("coins", "BTC", "words"), ["bit*coin"]), "must be plain ASCII letters"),
    (_with(("coins", "BTC", "aliases"), ["eth"]), "coins.ETH: symbol clashes with an alias of BTC"),
    (_with(("coins", "ETH", "words"), ["bitcoin"]), "alias 'bitcoin' maps to both BTC and ETH"),
    (_with(("tracked",), "BTC/USD"), "tracked must be a list of strings"),
    (
        _with(("tracked",), ["XBT/USD"]),
        "tracked pair 'XBT/USD' is not a canonical pair (use 'BTC/USD')",
    ),
    (
        _with(("tracked",), ["nonsense pair"]),
        "tracked pair 'nonsense pair' is not a canonical pair",
    ),
]


@pytest.mark.parametrize(("data", "message"), CONFIG_ERRORS)
def test_config_errors(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        CoinTable.from_mapping(data)
    assert isinstance(info.value, HandlerConfigError)
    assert isinstance(info.value, HandlerError)
    assert message in info.value.detail


def test_direct_construction_errors() -> None:
    with pytest.raises(HandlerConfigError, match="at least one coin"):
        CoinTable([], quotes={})
    with pytest.raises(HandlerConfigError, match="clashes with an alias"):
        CoinTable(
            [Coin(symbol="BTC", name="Bitcoin", aliases=("xbt",)), Coin(symbol="XBT", name="X")],
            quotes={},
        )
    with pytest.raises(HandlerConfigError, match="aliases must be non-empty strings"):
        CoinTable([Coin(symbol="BTC", name="Bitcoin")], quotes={"USD": [""]})
