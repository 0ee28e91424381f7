"""The tagger's rules as data: coins added to a table (as issue 12's API will) need no code."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from handlers import Coin, CoinTable, HandlerConfigError
from handlers._tags import Tagger
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
]


@pytest.mark.parametrize(("text", "expected"), EXTRA_CASES)
def test_coins_added_as_data_are_tagged_with_their_rules(
    text: str, expected: tuple[str, ...]
) -> None:
    assert EXTENDED.mentions(text) == expected, EXTENDED.tagger.explain(text)


def test_adding_coins_leaves_the_other_tags_alone() -> None:
    for text in ("Bitcoin Cash jumps", "ADA lawsuit settled", "SOL breaks out", "$eth"):
        assert EXTENDED.mentions(text) == COINS.mentions(text)


def test_explain_says_why() -> None:
    reasons = {m.text: (m.counted, m.reason) for m in COINS.tagger.explain(
        "Bitcoin Cash and ADA: ETH Zurich's $SOL study, ada, SOL/USDT, DOT/USD"
    )}  # fmt: skip
    assert reasons["Bitcoin"] == (False, "inside the exclusion 'Bitcoin Cash'")
    assert reasons["ETH"][0] is False
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
    tagger = Tagger(coins, crypto_cues=(cue for cue in ["token", "ETF"]), quotes=iter(["USD"]))
    assert tagger.tags("ADA token unlock") == ("ADA",)
    assert tagger.tags("spot ADA ETF") == ("ADA",)
    assert tagger.tags("ADA/USD") == ("ADA",)
    assert tagger.tags("ADA lawsuit") == ()
    assert tagger.tags("ADA and bitcoin") == ("ADA", "BTC")
    assert tagger.tags(None) == ()
    assert tagger.tags("") == ()


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
]


@pytest.mark.parametrize(("data", "message"), CONFIG_ERRORS)
def test_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(HandlerConfigError, match=re.escape(message)):
        CoinTable.from_mapping(data)
