"""The tagger's rules as data: coins added to a table (as issue 12's API will) need no code."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from handlers import Coin, CoinTable, HandlerConfigError
from handlers._tags import Tagger, TaggingRules
from tests.handlers._support import COIN_DATA, COINS

# Coins whose tickers are everyday words or units, described only with table data.
EXTRA_COINS: dict[str, dict[str, Any]] = {
    "NEAR": {
        "name": "NEAR Protocol",
        "words": ["near protocol"],
        "tickers": ["NEAR"],
        "needs_context": ["NEAR"],
    },
    "ATOM": {
        "name": "Cosmos",
        "names": ["Cosmos"],
        "tickers": ["ATOM"],
        "needs_context": ["ATOM", "Cosmos"],
        "cues": ["ibc", "interchain"],
        "other_cues": ["universe", "galaxy", "astronomy"],
    },
    "UNI": {"name": "Uniswap", "words": ["uniswap"], "tickers": ["UNI"]},
    "OP": {
        "name": "Optimism",
        "tickers": ["OP"],
        "needs_context": ["OP"],
        "exclude": ["op-ed", "op ed"],
    },
    "ONE": {"name": "Harmony", "tickers": ["ONE"], "needs_context": ["ONE"]},
    # An asset [tagging] other_assets names: once in the table, the table wins.
    "BCH": {
        "name": "Bitcoin Cash",
        "words": ["bitcoin cash"],
        "tickers": ["BCH"],
        "ticker_any_case": True,
    },
    "AR": {
        "name": "Arweave",
        "words": ["arweave"],
        "tickers": ["AR"],
        "needs_context": ["AR"],
        "exclude": ["ar glasses", "ar headset"],
        "other_cues": ["augmented reality", "headset", "glasses", "vr"],
    },
}


def _table_with_extra_coins() -> CoinTable:
    data = copy.deepcopy(COIN_DATA)
    data["coins"].update(copy.deepcopy(EXTRA_COINS))
    return CoinTable.from_mapping(data)


EXTENDED = _table_with_extra_coins()

EXTRA_CASES: list[tuple[str, tuple[str, ...]]] = [
    ("Bitwise launches first US spot NEAR ETF after token's recent surge", ("NEAR",)),
    ("Traders near the exit as bitcoin slides", ("BTC",)),
    ("NEAR THE END OF THE CYCLE, SAYS ANALYST", ()),
    ("NEAR Protocol ships sharding upgrade", ("NEAR",)),
    ("ATOM staking yields fall as IBC volumes grow", ("ATOM",)),
    ("Atom by atom: how chips are built", ()),
    ("Cosmos hub votes on inflation cut for ATOM stakers", ("ATOM",)),
    ("Cosmos: a journey through the universe", ()),
    ("UNI jumps 8% after Uniswap fee switch vote", ("UNI",)),
    ("Uni students protest fee rise", ()),
    ("Op-Ed: why crypto needs clear rules", ()),
    ("OP token airdrop round five goes live", ("OP",)),
    ("One of the biggest hacks of the year", ()),
    ("ONE AND DONE: THE FED'S LAST CUT", ()),
    ("Harmony's ONE token slides 12% after bridge exploit", ("ONE",)),
    ("Meta's new AR glasses go on sale", ()),
    ("AR price doubles as Arweave storage demand climbs", ("AR",)),
    ("Bitcoin Cash jumps 20% ahead of halving", ("BCH",)),
    ("BCH and BTC diverge", ("BCH", "BTC")),
]


@pytest.mark.parametrize(("text", "expected"), EXTRA_CASES)
def test_coins_added_as_data_are_tagged_with_their_rules(
    text: str, expected: tuple[str, ...]
) -> None:
    assert EXTENDED.mentions(text) == expected, EXTENDED.tagger.explain(text)


def test_adding_coins_leaves_the_other_tags_alone() -> None:
    for text in ("Ethereum Classic jumps", "ADA lawsuit settled", "SOL breaks out", "$eth"):
        assert EXTENDED.mentions(text) == COINS.mentions(text)


def test_explain_says_why() -> None:
    reasons = {m.text: (m.counted, m.reason) for m in COINS.tagger.explain(
        "Bitcoin Cash and ADA: ETH Zurich's $SOL study, ada, SOL/USDT, DOT/USD, LINK Mobility,"
        " Lido Staked ETH"
    )}  # fmt: skip
    assert reasons["Bitcoin"] == (False, "inside another asset's name 'Bitcoin Cash'")
    assert reasons["ETH"] == (False, "a derivative token (Lido Staked ETH)")
    assert reasons["LINK"] == (False, "the name of another entity (LINK Mobility)")
    zurich = COINS.tagger.explain("ETH Zurich")[0]
    assert (zurich.counted, zurich.reason) == (False, "inside the exclusion 'ETH Zurich'")
    assert reasons["$SOL"] == (True, "$-prefixed")
    assert reasons["ada"] == (False, "ticker not in upper case")
    assert reasons["USDT"] == (False, "the quote of a trading pair (the unit, not the subject)")
    assert reasons["DOT"][0] is True  # a pair right after it is crypto context
    assert reasons["ADA"][1].startswith("only with crypto context: crypto ")
    mentions = COINS.tagger.explain("buy $sol")
    assert (mentions[0].start, mentions[0].end, mentions[0].text) == (4, 8, "$sol")


def test_the_tagger_is_built_from_coin_objects_and_any_iterables() -> None:
    coins = [
        Coin(symbol="ADA", name="Cardano", tickers=("ADA",), needs_context=("ADA",)),
        Coin(symbol="BTC", name="Bitcoin", words=("bitcoin",)),
    ]
    tagger = Tagger(coins, TaggingRules(crypto_cues=("token", "ETF")), quotes=iter(["USD"]))
    assert tagger.tags("ADA token unlock") == ("ADA",)
    assert tagger.tags("spot ADA ETF") == ("ADA",)
    assert tagger.tags("ADA/USD") == ("ADA",)
    assert tagger.tags("ADA lawsuit") == ()
    assert tagger.tags("ADA and bitcoin") == ("ADA", "BTC")
    assert tagger.tags(None) == ()
    assert tagger.tags("") == ()


# Each mechanism of the reading, both ways: the sense it catches and the one it must leave.
MECHANISMS: list[tuple[str, tuple[str, ...]]] = [
    # A market move word right after a spelling that needs context is crypto context...
    ("Ether slips as traders de-risk ahead of CPI", ("ETH",)),
    ("Ether's drop deepens to 12% this week", ("ETH",)),
    ("Polygon (POL) jumps after upgrade", ("POL",)),
    ("DOT drops after governance fight", ("DOT",)),
    ("Avalanche gains after Visa partnership", ("AVAX",)),
    # ...but a weak one: one cue of the other sense outweighs it.
    ("DOT drops proposed rule on airline refunds", ()),
    ("Avalanche buries skiers in the Alps", ()),
    ("Chip stocks slip as traders de-risk ahead of CPI", ()),
    # A ticker written like a name is read only with a price after it.
    ("Sol price slides 9% as memecoin frenzy cools", ("SOL",)),
    ("Doge jumps 9% as meme coins rally", ("DOGE",)),
    ("Sol Campbell named manager", ()),
    ("Kabosu, the Shiba Inu behind the Doge meme, dies at 18", ()),
    # A capitalised entity word after a name or ticker: another company, place or institution.
    ("LINK Mobility posts record revenue", ()),
    ("LTC Properties beats estimates", ()),
    ("Ripple Foods launches pea milk", ()),
    ("Solana Beach council approves bluff repairs", ()),
    ("Ripple Labs files for a bank charter", ("XRP",)),
    ("LINK mobility on-chain", ("LINK",)),
    # A derivative prefix after a brand: another token. Staking as an activity is the coin.
    ("Lido Staked ETH depegs slightly", ()),
    ("Lido's liquid staked ETH hits record", ()),
    ("Coinbase Wrapped Staked ETH briefly loses peg", ()),
    ("Staked ETH hits a record 34 million", ("ETH",)),
    ("Amount of Staked ETH hits record", ("ETH",)),
    # Other crypto assets: not the coin they are named after, but crypto context.
    ("Ether, Bitcoin Cash lead gains in quiet session", ("ETH",)),
    ("Ethereum Classic rallies 12%", ()),
    ("Tether Gold hits record", ()),
    # A word after a name that shows the ordinary word.
    ("Tech layoffs Ripple Across Silicon Valley", ()),
    ("The Link Between Sleep and Memory", ()),
    # Domains no coin belongs to count against every name and ticker.
    ("Solana Sierra reaches Wimbledon fourth round", ()),
    ("Tennis star Solana Sierra signs with new coach", ()),
    ("ETH researchers map glacier melt in the Alps", ()),
    ("Solana network suffers five-hour outage", ("SOL",)),
    ("Bitcoin sponsors World Cup stadium", ("BTC",)),
    # A market move is a weak cue: it does not beat a cue of the other sense.
    ("Polygon drops review scores, moves to recommendations", ()),
    ("Avalanche gains momentum as NHL playoff race tightens", ()),
    # Ordinary-word uses: "X of", "X your".
    ("A Ripple of applause as orchestra returns", ()),
    ("Don't Tether Your Savings to a Single Bank", ()),
    # A share's ticker after an exchange; a compact pair in capitals counts for its base.
    ("Emeren Group (NYSE: SOL) reports results", ()),
    ("Interlink Electronics (NASDAQ: LINK) shares jump 12%", ()),
    ("BTCUSDT perpetual funding flips negative", ("BTC",)),
    ("ETHUSD bounces; XBTEUR flat", ("ETH", "BTC")),
    ("SOL/ETH ratio climbs", ("SOL",)),
    ("Chocolate prices: BTCUSDTX is no pair", ()),
    # A price right after a ticker, whatever the punctuation between.
    ("ADA: $0.72 (+3.1%)", ("ADA",)),
    ("BTC -2.3%, ETH flat", ("BTC", "ETH")),
    # Two derivative prefixes make a product name even without a brand.
    ("Liquid Staked ETH tokens lose ground to restaking", ()),
    # "Wrapped"/"Bridged" make another token wherever they stand.
    ("Wrapped XRP launches on Solana DeFi apps", ("SOL",)),
    ("Bridged USDC on Polygon to be phased out", ("POL",)),
    # A line all in lower case: names are read whatever their case, with context; tickers not.
    ("avalanche gains after visa partnership", ("AVAX",)),
    ("polygon jumps 9% after agglayer launch", ("POL",)),
    ("click the link in your bio for the full story", ()),
    ("the avalanche buried three skiers", ()),
    ("the sol rises over the plaza", ()),
    ("dot jumps 5% in a quiet session", ()),
    # The other senses of a coin's spellings are its own data: a currency, a rank, a card.
    ("Peru's Sol slides 2% as political crisis deepens", ()),
    ("Army LTC relieved of command", ()),
    ("Illinois LINK card benefits delayed", ()),
    # Names in capitals read as in Title Case; tickers in capitals still need context.
    ("BREAKING: RIPPLE SETTLES WITH SEC FOR $50 MILLION", ("XRP",)),
    ("HOW TO TETHER YOUR PHONE TO A LAPTOP", ()),
    ("THE LINK BETWEEN SLEEP AND MEMORY", ()),
    ("DOT ORDERS SAFETY REVIEW OF BOEING JETS", ()),
]


@pytest.mark.parametrize(("text", "expected"), MECHANISMS)
def test_each_mechanism_both_ways(text: str, expected: tuple[str, ...]) -> None:
    assert COINS.mentions(text) == expected, COINS.tagger.explain(text)


def test_phrases_allow_any_spacing_hyphens_and_curly_apostrophes() -> None:
    assert COINS.mentions("Bitcoin   Cash") == ()
    assert COINS.mentions("Bitcoin-Cash") == ()
    assert COINS.mentions("bitcoin\ncash") == ()
    assert COINS.mentions("Musk\u2019s DOGE team and crypto") == ()
    assert COINS.mentions("USD   Coin") == ("USDC",)


def test_hostile_text_stays_linear() -> None:
    # Thousands of candidate mentions: every check after a mention is bounded.
    assert COINS.mentions("BTC-" * 5000) == ("BTC",)
    assert COINS.mentions("ADA " * 5000) == ()
    assert COINS.mentions(("DOT " + "!" * 50) * 400) == ()
    # Words read next to a mention are bounded too: prefixes walked back, words ahead.
    assert COINS.mentions("Lido " + "staked " * 5000 + "ETH") == ()
    assert COINS.mentions("Ether slips " * 3000) == ("ETH",)
    assert COINS.mentions("LINK Mobility " * 3000) == ()
    assert COINS.mentions("Staked " * 5000 + "ETH") == ()
    assert COINS.mentions("BTCUSDT" * 5000) == ()
    assert COINS.mentions("BTCUSDT " * 5000) == ("BTC",)


def _with_coin(**entry: Any) -> dict[str, Any]:
    data = copy.deepcopy(COIN_DATA)
    data["coins"]["NEW"] = {"name": "New", **entry}
    return data


CONFIG_ERRORS: list[tuple[dict[str, Any], str]] = [
    (_with_coin(needs_context=["NOPE"]), "coins.NEW.needs_context: 'NOPE' is none of"),
    (_with_coin(needs_context="NEW"), "coins.NEW.needs_context must be a list of strings"),
    (_with_coin(exclude=["a<b"]), "coins.NEW.exclude: 'a<b' must be letters"),
    (_with_coin(cues=[""]), "coins.NEW.cues has an empty or over-long entry"),
    (_with_coin(other_cues=[1]), "coins.NEW.other_cues must be a list of strings"),
    (_with_coin(names=["Ne*w"]), "coins.NEW.names: 'Ne*w' must be plain ASCII"),
    (_with_coin(names=["bitcoin"]), "alias 'bitcoin' maps to both BTC and NEW"),
    ({**COIN_DATA, "tagging": ["crypto"]}, "[tagging] must be a table"),
    ({**COIN_DATA, "tagging": {"cues": []}}, "[tagging] has unknown key(s) cues"),
    ({**COIN_DATA, "tagging": {"crypto_cues": "crypto"}}, "tagging.crypto_cues must be a list"),
    (
        {**COIN_DATA, "tagging": {"market_words": ["sell off"]}},
        "tagging.market_words: 'sell off' must be one word",
    ),
    (
        {**COIN_DATA, "tagging": {"listing_prefixes": ["NYSE:"]}},
        "tagging.listing_prefixes: 'nyse:' must be one word",
    ),
    (
        {**COIN_DATA, "tagging": {"crypto_cues": ["token"], "other_cues": ["Token"]}},
        "tagging.other_cues: 'Token' is also a crypto cue",
    ),
]


@pytest.mark.parametrize(("data", "message"), CONFIG_ERRORS)
def test_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(HandlerConfigError, match=re.escape(message)):
        CoinTable.from_mapping(data)
