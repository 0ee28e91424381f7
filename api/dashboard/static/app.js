/*
 * CryptoViz dashboard ("Visionneuse Dynamique").
 *
 * Snapshot over REST (/api/v1/...), then live over one multiplexed WebSocket
 * (/ws/live: {"action": "subscribe", "channels": [...]}), reconnected with capped
 * exponential backoff; after a reconnect the snapshot is reloaded to fill what was
 * missed. No timer ever asks the server for data: besides the socket, requests are
 * made on load, on a selection change, after a reconnect, and when a live event says
 * something changed (a tick opening a new candle, a sentiment or prediction message).
 * A one-second local timer only re-renders the "age" texts.
 *
 * Every text that comes from the API is set with textContent (never innerHTML), and
 * links are kept only when they are http(s) URLs.
 */
(function () {
  "use strict";

  var LC = window.LightweightCharts;
  var API = "/api/v1";
  // Period -> candle width (about 60-180 candles per view).
  var INTERVALS = { "1h": "1m", "6h": "5m", "24h": "15m", "7d": "1h", "30d": "4h" };
  var WIDTH_S = { "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400 };
  var PERIOD_S = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000 };
  var LABELS = { positive: 1, neutral: 1, negative: 1 };
  var BACKOFF_MIN_MS = 500;
  var BACKOFF_MAX_MS = 30000;
  var MAX_FEED = 30;
  var DEFAULT_COIN = "BTC";
  // Freshness thresholds (seconds): ok below the first, warning below the second.
  var FRESHNESS = {
    ticks: [60, 600],
    trades: [300, 3600],
    articles: [6 * 3600, 24 * 3600],
    sentiment: [900, 3600 * 3],
    predictions: [900, 3600 * 3],
    alerts: null // alerts are rare by design: their age is information, not health
  };

  var $ = function (id) { return document.getElementById(id); };

  var state = {
    gen: 0,
    coins: [],
    coin: null,
    pair: null,
    periode: "24h",
    horizon: null, // seconds
    model: null, // null: the naive forecast (no model shown first)
    modelPicked: false,
    predictions: [],
    baselines: [],
    candles: [],
    ref24h: null, // price 24 h before, derived from the REST change, for the live change
    lastTick: null, // {ts, price}
    source: null, // the `source` of the pair's latest live tick (replay, history, synthetic)
    historyEnd: null, // the period shown ends at this time (the latest tick) instead of now
    fresh: { ticks: null, trades: null, articles: null, alerts: null, sentiment: null, predictions: null },
    health: null,
    pipeline: null, // health/pipeline/: dead letters and trade gaps
    articles: [],
    alerts: []
  };

  // ------------------------------------------------------------------ helpers

  function el(tag, props) {
    var node = document.createElement(tag);
    var key;
    props = props || {};
    for (key in props) {
      if (!Object.prototype.hasOwnProperty.call(props, key)) continue;
      var value = props[key];
      if (value === null || value === undefined) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else if (key === "title") node.title = String(value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, String(value));
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function safeUrl(raw) {
    if (typeof raw !== "string" || !raw) return null;
    try {
      var url = new URL(raw, location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  /** Epoch seconds of an API time: RFC 3339 string (REST) or epoch number (Kafka). */
  function toSeconds(value) {
    if (typeof value === "number") return value > 1e12 ? value / 1000 : value;
    if (typeof value === "string") {
      var ms = Date.parse(value);
      if (!isNaN(ms)) return ms / 1000;
      var n = Number(value);
      if (isFinite(n)) return n > 1e12 ? n / 1000 : n;
    }
    return null;
  }

  function num(value) {
    if (value === null || value === undefined || value === "") return null;
    var n = Number(value);
    return isFinite(n) ? n : null;
  }

  function fmtPrice(value) {
    var v = num(value);
    if (v === null) return "—";
    var abs = Math.abs(v);
    var digits = abs >= 1000 ? 2 : abs >= 1 ? 4 : 6;
    return v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: digits });
  }

  function fmtPct(value, digits) {
    var v = num(value);
    if (v === null) return "—";
    return (v > 0 ? "+" : "") + v.toFixed(digits === undefined ? 2 : digits) + " %";
  }

  function fmtDuration(seconds) {
    var s = Math.max(0, Math.round(seconds));
    if (s < 90) return s + " s";
    var m = Math.round(s / 60);
    if (m < 90) return m + " min";
    var h = Math.floor(s / 3600);
    if (h < 48) return h + " h " + Math.round((s - h * 3600) / 60) + " min";
    return Math.round(s / 86400) + " d";
  }

  function ago(ts) {
    return ts === null || ts === undefined ? "never" : fmtDuration(Date.now() / 1000 - ts) + " ago";
  }

  function iso(ts) {
    return ts === null || ts === undefined ? "" : new Date(ts * 1000).toISOString().replace(".000Z", "Z");
  }

  /**
   * What a tick's `source` says about its price path (handlers/_origin.py): "" for the
   * live exchange feed, else a line saying the prices are replayed, history or generated.
   */
  function describeSource(source) {
    if (!source || source === "kraken") return "";
    if (source.indexOf("replay:") === 0) {
      return "Replayed market (" + source.slice(7) + "), re-timed to now: not live prices";
    }
    if (source.indexOf("history:") === 0) {
      return "Recorded history (" + source.slice(8) + ") at its own time: not live prices";
    }
    if (source === "synthetic") return "Synthetic market: generated prices, not a real one";
    return "Source: " + source;
  }

  function renderSource() {
    var parts = [];
    if (state.source) parts.push(describeSource(state.source));
    if (state.historyEnd) {
      parts.push("No price in the last " + state.periode + ": showing the " + state.periode +
        " up to " + iso(state.historyEnd));
    }
    var node = $("price-source");
    node.textContent = parts.filter(Boolean).join(" · ");
    node.hidden = !node.textContent;
  }

  function pairPath(pair) {
    var parts = pair.split("/");
    return encodeURIComponent(parts[0]) + "/" + encodeURIComponent(parts[1]);
  }

  function getJSON(path, allowStatus) {
    return fetch(path, { headers: { Accept: "application/json" } }).then(function (response) {
      if (response.ok || (allowStatus && response.status === allowStatus)) return response.json();
      return response.text().then(function (body) {
        var detail = body;
        try { detail = JSON.parse(body).detail || body; } catch (e) { /* plain text */ }
        throw new Error(response.status + " " + String(detail).slice(0, 200));
      });
    });
  }

  function showError(where, error) {
    var banner = $("banner");
    banner.hidden = false;
    banner.textContent = where + ": " + (error && error.message ? error.message : String(error));
  }

  function setEmpty(container, message) {
    var existing = container.querySelector(".empty");
    if (!message) {
      if (existing) existing.remove();
      return;
    }
    if (!existing) {
      existing = el("div", { className: "empty" });
      container.appendChild(existing);
    }
    existing.textContent = message;
  }

  // ------------------------------------------------------------------ charts

  // attributionLogo: the in-chart logo injects an inline <style>, which the page's CSP
  // refuses; the footer carries the library's attribution (link to TradingView) instead.
  var chartColors = {
    layout: { background: { color: "transparent" }, textColor: "#8b97a6", fontSize: 11, attributionLogo: false,
      panes: { separatorColor: "#262d37", separatorHoverColor: "rgba(74,163,255,0.25)" } },
    grid: { vertLines: { color: "#1f252e" }, horzLines: { color: "#1f252e" } },
    rightPriceScale: { borderColor: "#262d37" },
    timeScale: { borderColor: "#262d37", timeVisible: true, secondsVisible: false, rightOffset: 3 },
    crosshair: { mode: 1 }
  };

  var charts = null;

  function makeCharts() {
    var price = LC.createChart($("price-chart"), Object.assign({ autoSize: true }, chartColors, {
      localization: { priceFormatter: fmtPrice }
    }));
    var candles = price.addSeries(LC.CandlestickSeries, {
      upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
      wickUpColor: "#26a69a", wickDownColor: "#ef5350", title: ""
    });
    var forecast = price.addSeries(LC.LineSeries, {
      color: "#ffb74d", lineWidth: 2, priceLineVisible: false, lastValueVisible: true,
      crosshairMarkerVisible: false, title: "forecast"
    });
    var band = { color: "rgba(255,183,77,0.55)", lineWidth: 1, lineStyle: LC.LineStyle.Dashed,
      priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false };
    var low = price.addSeries(LC.LineSeries, band);
    var high = price.addSeries(LC.LineSeries, band);

    var sentiment = LC.createChart($("sentiment-chart"), Object.assign({ autoSize: true }, chartColors));
    // Scores are in [0, 1] (the seeds' rule: > 0.6 positive, < 0.4 negative): the
    // baseline is neutral, 0.5.
    var score = sentiment.addSeries(LC.BaselineSeries, {
      baseValue: { type: "price", price: 0.5 },
      topLineColor: "#26a69a", topFillColor1: "rgba(38,166,154,0.35)", topFillColor2: "rgba(38,166,154,0.05)",
      bottomLineColor: "#ef5350", bottomFillColor1: "rgba(239,83,80,0.05)", bottomFillColor2: "rgba(239,83,80,0.35)",
      lineWidth: 2, priceLineVisible: false, title: "score",
      priceFormat: { type: "price", precision: 2, minMove: 0.01 },
      autoscaleInfoProvider: function () { return { priceRange: { minValue: 0, maxValue: 1 } }; }
    });
    var counts = sentiment.addSeries(LC.HistogramSeries, {
      color: "rgba(74,163,255,0.6)", priceLineVisible: false, title: "articles",
      priceFormat: { type: "volume" }
    }, 1);
    var panes = sentiment.panes();
    if (panes.length > 1) panes[1].setHeight(80);
    // Keep the whole period in view when the layout changes width (phone rotation,
    // the one-column breakpoint); a height change keeps the user's zoom.
    [[price, $("price-chart")], [sentiment, $("sentiment-chart")]].forEach(function (pair) {
      var width = 0;
      new ResizeObserver(function (entries) {
        var w = Math.round(entries[0].contentRect.width);
        if (width && w !== width) pair[0].timeScale().fitContent();
        width = w;
      }).observe(pair[1]);
    });
    return { price: price, candles: candles, forecast: forecast, low: low, high: high,
      sentiment: sentiment, score: score, counts: counts, bandLines: [] };
  }

  // ------------------------------------------------------------------ price

  function renderPrice(latest) {
    $("pair-title").textContent = state.pair || "—";
    if (!latest) {
      $("last-price").textContent = "—";
      $("change").textContent = "";
      $("quote-meta").textContent = "no price stored yet";
      return;
    }
    var price = num(latest.price);
    var ts = toSeconds(latest.timestamp);
    var change = num(latest.change_24h_pct);
    state.ref24h = change !== null && price !== null ? price / (1 + change / 100) : null;
    if (state.lastTick && state.lastTick.pair === state.pair && state.lastTick.ts > ts) {
      // A live tick newer than what the database had when it answered: keep it.
      renderChange(state.ref24h ? (state.lastTick.price / state.ref24h - 1) * 100 : change);
      return;
    }
    state.lastTick = { ts: ts, price: price, pair: state.pair };
    $("last-price").textContent = fmtPrice(price);
    renderChange(change);
    renderQuoteMeta(latest.bid, latest.ask);
  }

  function renderChange(change) {
    var node = $("change");
    node.textContent = change === null ? "" : fmtPct(change) + " 24 h";
    node.className = "change" + (change === null ? "" : change >= 0 ? " up" : " down");
  }

  function renderQuoteMeta(bid, ask) {
    var parts = [];
    if (num(bid) !== null) parts.push("bid " + fmtPrice(bid));
    if (num(ask) !== null) parts.push("ask " + fmtPrice(ask));
    if (state.lastTick && state.lastTick.ts) parts.push("at " + iso(state.lastTick.ts));
    $("quote-meta").textContent = parts.join(" · ");
  }

  function renderCandles(rows) {
    state.candles = rows.slice().reverse().map(function (c) {
      return { time: Math.floor(toSeconds(c.timestamp)), open: num(c.open), high: num(c.high),
        low: num(c.low), close: num(c.close) };
    });
    charts.candles.setData(state.candles);
    setEmpty($("price-chart"), state.candles.length ? null : "No candles in this period");
    charts.price.timeScale().fitContent();
  }

  /** A live tick: the price text, the last candle (or a new one), the 24 h change. */
  function onTick(data) {
    var price = num(data.last);
    var ts = toSeconds(data.timestamp);
    if (price === null || ts === null) return;
    if (state.historyEnd) {
      // Prices again after a period of history only: show the usual "last <period>".
      var entry = coinEntry();
      if (entry) entry.last_ticker = ts;
      loadSelection();
      return;
    }
    var previous = state.lastTick;
    if (previous && previous.pair === state.pair && previous.ts && ts < previous.ts) return; // late
    state.lastTick = { ts: ts, price: price, pair: state.pair };
    state.fresh.ticks = Math.max(state.fresh.ticks || 0, ts);
    if ((data.source || null) !== state.source) {
      state.source = data.source || null;
      renderSource();
    }
    var node = $("last-price");
    node.textContent = fmtPrice(price);
    node.classList.remove("tick-up", "tick-down");
    if (previous && previous.price !== null) {
      if (price > previous.price) node.classList.add("tick-up");
      else if (price < previous.price) node.classList.add("tick-down");
    }
    if (state.ref24h) renderChange((price / state.ref24h - 1) * 100);
    renderQuoteMeta(data.bid, data.ask);

    var width = WIDTH_S[INTERVALS[state.periode]];
    var bucket = Math.floor(ts / width) * width;
    var last = state.candles[state.candles.length - 1];
    var bar;
    if (last && last.time === bucket) {
      bar = { time: bucket, open: last.open, high: Math.max(last.high, price),
        low: Math.min(last.low, price), close: price };
      state.candles[state.candles.length - 1] = bar;
    } else if (!last || bucket > last.time) {
      bar = { time: bucket, open: price, high: price, low: price, close: price };
      state.candles.push(bar);
      if (last) scheduleRefresh(); // a new bucket: analytics may have moved on too
    }
    if (bar) {
      charts.candles.update(bar);
      setEmpty($("price-chart"), null);
    }
    renderHealth();
  }

  // ------------------------------------------------------------------ predictions
  //
  // /predictions/{coin}/ gives each model's latest forecast per horizon, the one the
  // job shows first (never worse than the naive forecast over its trailing window),
  // every model's trailing skill, and the accuracy report's lines of the 24 h before
  // the latest forecast. The horizon is chosen here; the model defaults to the one
  // shown first and stays as picked until the horizon changes ("last price" is the
  // naive forecast, what is shown when no model is shown first).

  var BASELINE_LABELS = { shown_first: "shown first (whichever model it was)", naive_last_value: "naive (last price)" };

  function fmtSkill(value) {
    var v = num(value);
    if (v === null) return "—";
    return (v > 0 ? "+" : "") + v.toFixed(3);
  }

  function fmtShare(value) {
    var v = num(value);
    return v === null ? "—" : Math.round(v * 100) + " %";
  }

  function fmtCoverage(a) {
    var bands = (a && a.intervals) || [];
    if (!bands.length) return "—";
    return bands.map(function (i) {
      return Math.round(num(i.level) * 100) + ": " + fmtShare(i.coverage);
    }).join(" · ");
  }

  function fmtHorizon(seconds) {
    return seconds % 60 === 0 ? seconds / 60 + " min" : seconds + " s";
  }

  function ofHorizon(rows) {
    return rows.filter(function (p) { return p.horizon_s === state.horizon; });
  }

  function renderPredictions(body) {
    var rows = (body && body.data) || [];
    state.predictions = rows;
    state.baselines = (body && body.baselines) || [];
    var horizons = [];
    rows.forEach(function (p) { if (horizons.indexOf(p.horizon_s) < 0) horizons.push(p.horizon_s); });
    horizons.sort(function (a, b) { return a - b; });
    if (horizons.indexOf(state.horizon) < 0) {
      state.horizon = horizons.length ? horizons[0] : null;
      state.modelPicked = false;
    }
    var hselect = $("horizon");
    clear(hselect);
    horizons.forEach(function (h) {
      var option = el("option", { value: h, text: fmtHorizon(h) });
      option.selected = h === state.horizon;
      hselect.appendChild(option);
    });
    hselect.parentNode.hidden = horizons.length === 0;

    var shown = ofHorizon(rows);
    var first = null;
    shown.forEach(function (p) { if (p.shown_first) first = p.model_name; });
    var known = state.model === null || shown.some(function (p) { return p.model_name === state.model; });
    if (!state.modelPicked || !known) {
      state.model = first;
      state.modelPicked = false;
    }
    var select = $("model");
    clear(select);
    if (shown.length) {
      var naive = el("option", { value: "", text: "last price (naive)" });
      naive.selected = state.model === null;
      select.appendChild(naive);
    }
    shown.forEach(function (p) {
      var option = el("option", { value: p.model_name, text: p.label || p.model_name });
      option.selected = p.model_name === state.model;
      select.appendChild(option);
    });
    select.parentNode.hidden = shown.length === 0;

    var tbody = $("models").tBodies[0];
    clear(tbody);
    shown.forEach(function (p) {
      var a = p.accuracy || {};
      var lo = num(p.confidence_interval_low);
      var hi = num(p.confidence_interval_high);
      var level = num(p.interval_level);
      var interval = lo !== null && hi !== null
        ? fmtPrice(lo) + " – " + fmtPrice(hi) + (level !== null ? " (" + Math.round(level * 100) + " %)" : "")
        : "—";
      var trailing = num(p.trailing_skill);
      var skill = num(a.skill_vs_naive);
      tbody.appendChild(el("tr", {
        className: p.model_name === state.model ? "selected" : "",
        dataset: { model: p.model_name, horizon: String(p.horizon_s), shownFirst: String(!!p.shown_first) }
      },
        el("td", { title: p.model_name }, p.label || p.model_name,
          p.shown_first ? el("span", { className: "first", text: "shown first" }) : null),
        el("td", { text: fmtPrice(p.predicted_price) }),
        el("td", { text: interval }),
        el("td", { className: trailing !== null && trailing < 0 ? "negative" : "", text: fmtSkill(trailing) }),
        el("td", { className: skill !== null && skill < 0 ? "negative" : "", text: fmtSkill(skill) }),
        el("td", { text: a.mae === undefined ? "—" : fmtPrice(a.mae) }),
        el("td", { text: fmtShare(a.directional_accuracy) }),
        el("td", { text: fmtCoverage(a) }),
        el("td", { text: a.predictions === undefined ? "0" : String(a.predictions) })));
    });
    state.baselines.filter(function (a) { return a.horizon_s === state.horizon; }).forEach(function (a) {
      var skill = num(a.skill_vs_naive);
      tbody.appendChild(el("tr", { className: "baseline", dataset: { model: a.model_name, horizon: String(a.horizon_s) } },
        el("td", { text: BASELINE_LABELS[a.model_name] || a.model_name }),
        el("td", { text: "" }),
        el("td", { text: "" }),
        el("td", { text: "" }),
        el("td", { className: skill !== null && skill < 0 ? "negative" : "", text: fmtSkill(skill) }),
        el("td", { text: fmtPrice(a.mae) }),
        el("td", { text: fmtShare(a.directional_accuracy) }),
        el("td", { text: fmtCoverage(a) }),
        el("td", { text: String(a.predictions) })));
    });
    if (!rows.length) {
      tbody.appendChild(el("tr", {}, el("td", { colspan: 9, className: "meta", text: "No forecast for this coin yet" })));
    }
    renderForecast();
    var newest = rows.reduce(function (m, p) { return Math.max(m, toSeconds(p.timestamp) || 0); }, 0);
    if (newest) state.fresh.predictions = Math.max(state.fresh.predictions || 0, newest);
  }

  function renderForecast() {
    var p = null;
    var shown = ofHorizon(state.predictions);
    shown.forEach(function (row) { if (row.model_name === state.model) p = row; });
    var summary = $("prediction-summary");
    charts.bandLines.forEach(function (line) { charts.forecast.removePriceLine(line); });
    charts.bandLines = [];
    if (!p) {
      charts.forecast.setData([]);
      charts.low.setData([]);
      charts.high.setData([]);
      var last = shown.length ? num(shown[0].last_price) : null;
      summary.textContent = shown.length
        ? (shown.some(function (r) { return r.shown_first; })
          ? "Naive forecast"
          : "No model beats the naive forecast over its trailing window") + " at " + fmtHorizon(state.horizon) +
          ": the last price" + (last === null ? "" : ", " + fmtPrice(last) + ",") + " is the forecast."
        : "";
      return;
    }
    var t0 = Math.floor(toSeconds(p.timestamp));
    var t1 = Math.floor(toSeconds(p.target_time));
    var start = num(p.last_price) !== null ? num(p.last_price) : num(p.predicted_price);
    if (t1 <= t0) t1 = t0 + 1;
    charts.forecast.setData([{ time: t0, value: start }, { time: t1, value: num(p.predicted_price) }]);
    var lo = num(p.confidence_interval_low);
    var hi = num(p.confidence_interval_high);
    charts.low.setData(lo === null ? [] : [{ time: t0, value: start }, { time: t1, value: lo }]);
    charts.high.setData(hi === null ? [] : [{ time: t0, value: start }, { time: t1, value: hi }]);
    // The intervals also as horizontal lines: the cone above is a few pixels wide when the
    // horizon is short next to the candle width.
    var tag = function (level) { return level === null ? "" : Math.round(level * 100) + "% "; };
    var inner = tag(num(p.interval_level));
    var outer = tag(num(p.outer_interval_level));
    [[lo, inner + "low"], [hi, inner + "high"],
      [num(p.outer_interval_low), outer + "low"], [num(p.outer_interval_high), outer + "high"]].forEach(function (bound) {
      if (bound[0] === null) return;
      charts.bandLines.push(charts.forecast.createPriceLine({
        price: bound[0], color: "rgba(255,183,77,0.55)", lineWidth: 1, lineStyle: LC.LineStyle.Dotted,
        axisLabelVisible: true, title: bound[1]
      }));
    });
    var a = p.accuracy;
    var text = (p.label || p.model_name) + ": " + fmtPrice(p.predicted_price) + " at " + iso(t1) +
      " (issued " + iso(t0) + ", " + fmtHorizon(p.horizon_s) + " ahead)" +
      (lo !== null && hi !== null ? " [" + inner + fmtPrice(lo) + " – " + fmtPrice(hi) + "]" : "") +
      " · trailing skill " + fmtSkill(p.trailing_skill);
    text += a && a.predictions
      ? " · over the 24 h before: MAE " + fmtPrice(a.mae) + ", skill " + fmtSkill(a.skill_vs_naive) +
        ", direction " + fmtShare(a.directional_accuracy) + ", coverage " + fmtCoverage(a) + " (n = " + a.predictions + ")"
      : " · accuracy not measured yet (no actual price known)";
    summary.textContent = text;
  }

  // ------------------------------------------------------------------ sentiment

  /**
   * The selected period of sentiment: hour by hour for 7 d and 30 d (the seed's series,
   * one request covers it: 168 or 720 rows), the Spark windows for shorter periods.
   */
  function sentimentURL(coin) {
    var hourly = state.periode === "7d" || state.periode === "30d";
    return API + "/sentiment/" + encodeURIComponent(coin) + "/historique/?periode=" + state.periode +
      (hourly ? "" : "&resolution=window&limit=1000");
  }

  function renderSentiment(body) {
    // Windows of several sources may share a time: merge them, weighted by articles.
    // Hours without articles have no score (a gap in the line) and a zero count.
    var byTime = {};
    ((body && body.data) || []).forEach(function (s) {
      var t = Math.floor(toSeconds(s.timestamp));
      var n = num(s.article_count) || 0;
      var score = num(s.sentiment_score);
      var entry = byTime[t] || (byTime[t] = { weighted: 0, n: 0, plain: 0, rows: 0, scored: 0 });
      entry.n += n;
      if (score === null) return;
      entry.weighted += score * n;
      entry.plain += score;
      entry.rows += 1;
      entry.scored += n;
    });
    var times = Object.keys(byTime).map(Number).sort(function (a, b) { return a - b; });
    var scores = times.map(function (t) {
      var e = byTime[t];
      if (!e.rows) return { time: t }; // whitespace: no score in this hour
      return { time: t, value: e.scored ? e.weighted / e.scored : e.plain / e.rows };
    });
    var counts = times.map(function (t) { return { time: t, value: byTime[t].n }; });
    state.sentimentSpan = times.length
      ? { first: times[0], last: times[times.length - 1], rows: times.length,
          articles: counts.reduce(function (sum, c) { return sum + c.value; }, 0) }
      : null;
    charts.score.setData(scores);
    charts.counts.setData(counts);
    charts.sentiment.timeScale().fitContent();
    var scored = scores.filter(function (s) { return s.value !== undefined; });
    setEmpty($("sentiment-chart"), scored.length ? null : "No sentiment in this period");
    var total = state.sentimentSpan ? state.sentimentSpan.articles : 0;
    var last = scored[scored.length - 1];
    var unit = body && body.resolution === "1h" ? " hours" : " windows";
    $("sentiment-summary").textContent = last
      ? "latest " + last.value.toFixed(2) + " at " + iso(last.time) +
        " · " + total + " article mentions over " + times.length + unit
      : "";
    if (last) state.fresh.sentiment = Math.max(state.fresh.sentiment || 0, last.time);
  }

  // ------------------------------------------------------------------ feeds

  function articleOf(a) {
    // REST rows (ArticlePoint) and live messages (the producer's JSON) name fields differently.
    var sentiment = a.sentiment && typeof a.sentiment === "object" ? a.sentiment : {};
    return {
      id: String(a.article_id || a.id || ""),
      ts: toSeconds(a.timestamp),
      title: String(a.title || "(untitled)"),
      url: safeUrl(a.url),
      website: a.website ? String(a.website) : "",
      label: String(a.sentiment_label || sentiment.label || ""),
      score: num(a.sentiment_score !== undefined ? a.sentiment_score : sentiment.score)
    };
  }

  function alertOf(a, key) {
    return {
      pair: String(key || a.pair || ""),
      ts: toSeconds(a.timestamp),
      price: num(a.last_price !== undefined ? a.last_price : a.last),
      change: num(a.change_percent !== undefined ? a.change_percent : a.change),
      type: a.alert_type === "down" ? "down" : "up",
      threshold: num(a.threshold)
    };
  }

  function renderArticles(fresh) {
    var list = $("articles");
    clear(list);
    state.articles.forEach(function (a) {
      var label = LABELS[a.label] ? a.label : "unscored";
      var title = a.url
        ? el("a", { className: "title", href: a.url, target: "_blank", rel: "noopener noreferrer", text: a.title })
        : el("span", { className: "title", text: a.title });
      list.appendChild(el("li", { className: fresh && fresh[a.id] ? "fresh" : "", dataset: { id: a.id } },
        el("span", { className: "badge " + label, text: label }),
        title,
        el("span", { className: "meta", title: iso(a.ts),
          text: [a.website, ago(a.ts), a.score === null ? "" : "score " + a.score.toFixed(2)]
            .filter(Boolean).join(" · ") })));
    });
    if (!state.articles.length) list.appendChild(el("li", { className: "empty-item", text: "No article mentioning this coin" }));
  }

  function renderAlerts(freshFirst) {
    var list = $("alerts");
    clear(list);
    state.alerts.forEach(function (a, i) {
      list.appendChild(el("li", { className: (a.pair === state.pair ? "current " : "") + (freshFirst && i === 0 ? "fresh" : "") },
        el("span", { className: "badge " + a.type, text: a.type === "down" ? "▼ down" : "▲ up" }),
        el("strong", { text: a.pair }), " ",
        el("span", { text: fmtPct(a.change) + " → " + fmtPrice(a.price) }),
        el("span", { className: "meta", title: iso(a.ts),
          text: " · " + ago(a.ts) + (a.threshold === null ? "" : " · threshold " + a.threshold + " %") })));
    });
    if (!state.alerts.length) list.appendChild(el("li", { className: "empty-item", text: "No alert in the last 7 days" }));
  }

  // ------------------------------------------------------------------ health strip

  function chip(key, value, level, title) {
    return el("span", { className: "chip", dataset: { level: level, key: key }, title: title || "" },
      el("span", { className: "k", text: key }), el("span", { className: "v", text: value }));
  }

  function levelOf(kind, ts) {
    var limits = FRESHNESS[kind];
    if (ts === null || ts === undefined) return "bad";
    if (!limits) return "info";
    var age = Date.now() / 1000 - ts;
    return age < limits[0] ? "ok" : age < limits[1] ? "warn" : "bad";
  }

  function renderHealth() {
    var strip = $("health");
    var chips = [];
    var h = state.health;
    if (h) {
      var db = h.database || {};
      var kafka = h.kafka || {};
      var live = h.live || {};
      chips.push(chip("database", db.status === "up" ? "up " + (db.latency_ms === null ? "" : Math.round(db.latency_ms) + " ms") : "down",
        db.status === "up" ? "ok" : "bad", db.error || ""));
      chips.push(chip("kafka", kafka.status === "up" ? "up" : "down", kafka.status === "up" ? "ok" : "bad", kafka.error || ""));
      chips.push(chip("live relay", String(live.status || "?") + " · " + (live.clients || 0) + " clients",
        live.status === "running" ? "ok" : live.status === "starting" ? "warn" : "bad",
        (live.assigned_partitions || 0) + " partitions assigned"));
    } else {
      chips.push(chip("api", "unknown", "na"));
    }
    // Ticks, trades, sentiment and predictions: of the selected coin; articles and
    // alerts: of any coin (the newest the pipeline stored).
    var coin = state.coin || "?";
    [["ticks", coin + " ticks"], ["trades", coin + " trades"], ["sentiment", coin + " sentiment"],
      ["predictions", coin + " predictions"], ["articles", "any coin's articles"],
      ["alerts", "any pair's alerts"]].forEach(function (kind) {
      var ts = state.fresh[kind[0]];
      chips.push(chip(kind[0], ts ? fmtDuration(Date.now() / 1000 - ts) + " old" : "none",
        levelOf(kind[0], ts), ts ? "newest " + kind[1] + " at " + iso(ts) : "no " + kind[1] + " stored yet"));
    });
    // Counted by the API's health/pipeline/ (dead-letter topic offsets, holes in the stored
    // trade_id sequences); any dead letter or hole is worth a look, hence "warn".
    var p = state.pipeline;
    var dl = p ? p.dead_letters : null;
    chips.push(dl && dl.last_24h !== null
      ? chip("dead letters", dl.last_24h + " in 24 h", dl.last_24h > 0 ? "warn" : "ok",
        dl.retained + " kept in topic " + dl.topic + "; by reason: cryptoviz_dead_letters_total")
      : chip("dead letters", "n/a", "na", dl ? dl.error || "" : "health/pipeline/ did not answer"));
    var gaps = p ? p.trade_gaps : null;
    chips.push(gaps && gaps.gaps !== null
      ? chip("gaps", String(gaps.gaps), gaps.gaps > 0 ? "warn" : "ok",
        gaps.missing_trades + " trade ids missing in the last " + gaps.window_hours + " h" +
        gaps.pairs.filter(function (g) { return g.gaps > 0; })
          .map(function (g) { return "; " + g.pair + ": " + g.gaps; }).join(""))
      : chip("gaps", "n/a", "na", gaps ? gaps.error || "" : "health/pipeline/ did not answer"));
    clear(strip);
    chips.forEach(function (c) { strip.appendChild(c); });
  }

  // ------------------------------------------------------------------ loading

  function coinEntry() {
    var found = null;
    state.coins.forEach(function (c) { if (c.symbol === state.coin) found = c; });
    return found;
  }

  function applyFreshness() {
    var c = coinEntry();
    if (!c) return;
    var pairFresh = toSeconds(c.last_ticker);
    var liveTick = state.lastTick && state.lastTick.pair === state.pair ? state.lastTick.ts : 0;
    state.fresh.ticks = Math.max(pairFresh || 0, liveTick || 0) || null;
    state.fresh.trades = toSeconds(c.last_trade);
    state.fresh.sentiment = toSeconds(c.last_sentiment);
    state.fresh.predictions = toSeconds(c.last_prediction);
  }

  function loadStatus() {
    return Promise.all([
      getJSON(API + "/health/", 503).then(function (h) { state.health = h; }, function () { state.health = null; }),
      getJSON(API + "/health/pipeline/").then(function (p) { state.pipeline = p; }, function () { state.pipeline = null; }),
      getJSON(API + "/cryptos/").then(function (body) { state.coins = body.data || []; applyFreshness(); }),
      getJSON(API + "/article/historique/?periode=30d&limit=1").then(function (body) {
        var newest = body.data && body.data[0];
        state.fresh.articles = newest ? toSeconds(newest.timestamp) : null;
      })
    ]).then(renderHealth);
  }

  function loadSelection() {
    var gen = ++state.gen;
    var coin = state.coin;
    var pair = state.pair;
    var base = pair.split("/")[0];
    var quote = pair.split("/")[1];
    var interval = INTERVALS[state.periode];
    var current = function () { return gen === state.gen; };
    $("banner").hidden = true;
    // Only history stored (an import, a replay on its original clock): show the period
    // that ends at the latest tick, and say so, instead of an empty "last 24 h".
    var entry = coinEntry();
    var latest = entry ? toSeconds(entry.last_ticker) : null;
    state.historyEnd = latest !== null && Date.now() / 1000 - latest > PERIOD_S[state.periode]
      ? latest : null;
    var range = "&periode=" + state.periode +
      (state.historyEnd ? "&date_fin=" + encodeURIComponent(iso(Math.ceil(state.historyEnd) + 1)) : "");
    renderSource();
    var jobs = [
      getJSON(API + "/prix/" + encodeURIComponent(base) + "/temps_reel/?quote=" + encodeURIComponent(quote))
        .then(function (p) { if (current()) renderPrice(p); }, function (e) {
          if (!current()) return;
          if (/^404/.test(e.message)) renderPrice(null); else throw e;
        }),
      getJSON(API + "/candles/" + pairPath(pair) + "/?interval=" + interval + range + "&limit=1000")
        .then(function (body) { if (current()) renderCandles(body.data || []); }),
      getJSON(API + "/predictions/" + encodeURIComponent(coin) + "/")
        .then(function (body) { if (current()) renderPredictions(body); }),
      getJSON(sentimentURL(coin))
        .then(function (body) { if (current()) renderSentiment(body); }),
      getJSON(API + "/articles/" + encodeURIComponent(coin) + "/?periode=30d&limit=" + MAX_FEED)
        .then(function (body) {
          if (!current()) return;
          state.articles = (body.data || []).map(articleOf);
          renderArticles();
        }),
      getJSON(API + "/alert/historique/?periode=7d&limit=" + MAX_FEED)
        .then(function (body) {
          if (!current()) return;
          state.alerts = (body.data || []).map(function (a) { return alertOf(a, a.pair); });
          if (state.alerts.length) state.fresh.alerts = state.alerts[0].ts;
          renderAlerts();
        })
    ].map(function (job) { return job.catch(function (e) { if (current()) showError("loading", e); }); });
    return Promise.all(jobs).then(function () {
      if (current()) {
        document.body.dataset.loaded = String(gen);
        renderHealth();
      }
    });
  }

  var refreshTimer = null;
  /** Re-read what live events say has changed (debounced; never periodic). */
  function scheduleRefresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      var gen = state.gen;
      var coin = state.coin;
      getJSON(API + "/predictions/" + encodeURIComponent(coin) + "/")
        .then(function (body) { if (gen === state.gen) renderPredictions(body); }).catch(function () {});
      getJSON(sentimentURL(coin))
        .then(function (body) { if (gen === state.gen) renderSentiment(body); }).catch(function () {});
      loadStatus().catch(function () {});
    }, 1500);
  }

  // ------------------------------------------------------------------ selection

  function fillSelectors() {
    var coinSelect = $("coin");
    clear(coinSelect);
    state.coins.filter(function (c) { return c.active; }).forEach(function (c) {
      var option = el("option", { value: c.symbol, text: c.symbol + " · " + c.name });
      option.selected = c.symbol === state.coin;
      coinSelect.appendChild(option);
    });
    var pairSelect = $("pair");
    clear(pairSelect);
    var c = coinEntry();
    ((c && c.pairs) || []).forEach(function (p) {
      var option = el("option", { value: p, text: p });
      option.selected = p === state.pair;
      pairSelect.appendChild(option);
    });
    $("periode").value = state.periode;
  }

  function choose(coin, pair, periode) {
    var entry = null;
    state.coins.forEach(function (c) { if (c.symbol === coin && c.active) entry = c; });
    if (!entry) {
      // Default: BTC; else (BTC inactive) the coin with the freshest ticks.
      state.coins.forEach(function (c) { if (c.symbol === DEFAULT_COIN && c.active) entry = c; });
    }
    if (!entry) {
      state.coins.filter(function (c) { return c.active; }).forEach(function (c) {
        if (!entry || (c.age_s !== null && (entry.age_s === null || c.age_s < entry.age_s))) entry = c;
      });
    }
    if (!entry) return false;
    state.coin = entry.symbol;
    state.pair = entry.pairs.indexOf(pair) >= 0 ? pair : entry.pairs[0];
    state.periode = INTERVALS[periode] ? periode : "24h";
    var params = new URLSearchParams({ coin: state.coin, pair: state.pair, periode: state.periode });
    history.replaceState(null, "", "?" + params.toString());
    fillSelectors();
    applyFreshness();
    return true;
  }

  function channels() {
    return ["ticker:" + state.pair, "sentiment:" + state.coin, "prediction:" + state.coin,
      "article:" + state.coin, "alert"];
  }

  function onSelectionChange() {
    var coin = $("coin").value;
    var pair = coin === state.coin ? $("pair").value : null;
    if (!choose(coin, pair, $("periode").value)) return;
    state.lastTick = null;
    state.source = null;
    live.follow(channels());
    loadSelection();
  }

  // ------------------------------------------------------------------ live

  var live = {
    ws: null,
    attempt: 0,
    wanted: [],
    dropped: false,
    timer: null,

    connect: function () {
      var self = this;
      var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/live";
      var ws;
      setConnection("connecting", "connecting…");
      try {
        ws = new WebSocket(url);
      } catch (e) {
        this.retry();
        return;
      }
      this.ws = ws;
      ws.onopen = function () {
        self.attempt = 0;
        setConnection("live", "live");
        self.send("subscribe", self.wanted);
        if (self.dropped) {
          // Messages published while we were away are lost: reload the snapshot.
          self.dropped = false;
          loadStatus().catch(function () {});
          loadSelection();
        }
      };
      ws.onmessage = function (event) { onLiveMessage(event.data); };
      ws.onclose = function () {
        if (self.ws !== ws) return;
        self.ws = null;
        self.dropped = true;
        document.body.dataset.subscribed = "";
        self.retry();
      };
      ws.onerror = function () { /* a close event follows */ };
    },

    retry: function () {
      var self = this;
      var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, this.attempt));
      delay = Math.round(delay * (0.75 + Math.random() * 0.5));
      this.attempt += 1;
      document.body.dataset.reconnects = String((Number(document.body.dataset.reconnects) || 0) + 1);
      setConnection("reconnecting", "reconnecting in " + Math.ceil(delay / 1000) + " s");
      clearTimeout(this.timer);
      this.timer = setTimeout(function () { self.connect(); }, delay);
    },

    follow: function (names) {
      var old = this.wanted;
      this.wanted = names.slice();
      this.send("unsubscribe", old.filter(function (n) { return names.indexOf(n) < 0; }));
      this.send("subscribe", names.filter(function (n) { return old.indexOf(n) < 0; }));
    },

    send: function (action, names) {
      if (!names.length || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      this.ws.send(JSON.stringify({ action: action, channels: names }));
    }
  };

  function setConnection(kind, text) {
    var node = $("connection");
    node.dataset.state = kind;
    node.textContent = text;
  }

  function onLiveMessage(raw) {
    var msg;
    try { msg = JSON.parse(raw); } catch (e) { return; }
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "subscribed") {
      document.body.dataset.subscribed = (msg.channels || []).join(" ");
      return;
    }
    if (msg.type === "error") {
      showError("live", new Error(String(msg.detail || "subscription refused")));
      return;
    }
    var data = msg.data && typeof msg.data === "object" ? msg.data : {};
    if (msg.type === "ticker") {
      if (msg.key === state.pair) onTick(data);
    } else if (msg.type === "article") {
      var article = articleOf(data);
      if (!article.id || state.articles.some(function (a) { return a.id === article.id; })) return;
      state.articles.unshift(article);
      state.articles = state.articles.slice(0, MAX_FEED);
      state.fresh.articles = Math.max(state.fresh.articles || 0, article.ts || 0);
      var fresh = {};
      fresh[article.id] = true;
      renderArticles(fresh);
      renderHealth();
    } else if (msg.type === "alert") {
      var alert = alertOf(data, msg.key);
      state.alerts.unshift(alert);
      state.alerts = state.alerts.slice(0, MAX_FEED);
      state.fresh.alerts = Math.max(state.fresh.alerts || 0, alert.ts || 0);
      renderAlerts(true);
      renderHealth();
    } else if ((msg.type === "sentiment" || msg.type === "prediction") && msg.key === state.coin) {
      scheduleRefresh();
    }
  }

  // ------------------------------------------------------------------ start

  function start() {
    if (!LC) {
      showError("startup", new Error("the chart library did not load (/dashboard/vendor/charts.js)"));
      return;
    }
    charts = makeCharts();
    ["coin", "pair", "periode"].forEach(function (id) { $(id).addEventListener("change", onSelectionChange); });
    $("model").addEventListener("change", function () {
      state.model = $("model").value || null;
      state.modelPicked = true;
      renderPredictions({ data: state.predictions, baselines: state.baselines });
    });
    $("horizon").addEventListener("change", function () {
      state.horizon = Number($("horizon").value);
      state.modelPicked = false;
      renderPredictions({ data: state.predictions, baselines: state.baselines });
    });
    $("controls").addEventListener("submit", function (e) { e.preventDefault(); });
    setInterval(function () {
      // Local re-render of the ages only: no request.
      renderHealth();
    }, 1000);
    var params = new URLSearchParams(location.search);
    loadStatus().then(function () {
      if (!choose(params.get("coin"), params.get("pair"), params.get("periode") || "24h")) {
        showError("startup", new Error("no active crypto is configured"));
        return;
      }
      live.wanted = channels();
      live.connect();
      return loadSelection();
    }).catch(function (e) { showError("startup", e); });
  }

  // For the browser test and for debugging from the console.
  window.cryptoviz = { state: state, live: live };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
