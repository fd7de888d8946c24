"""The 101 Formulaic Alphas (Kakushadze 2016, arXiv:1601.00991) in the formula language.

scripts/make_sample_data.py writes them as two catalogs: ``catalogs/alpha101.yaml`` (every
alpha the language expresses today, with the helper formulas ``returns`` and ``adv{d}``)
and ``catalogs/alpha101_industry.yaml`` (the alphas that neutralise against an industry
classification: they use ``cs_demean(x, by=ATTRIBUTE)``, which is not in the language yet).

The paper's operators become (docs/formula-language.md pins each function's semantics):

    rank(x)                  cs_rank(x)
    delay(x, d), delta(x, d) lag(x, d), diff(x, d)
    correlation, covariance  ts_corr, ts_cov (sample covariance, n - 1)
    ts_rank(x, d)            ts_rank(x, d): the fraction form, in [1/d, 1]
    ts_min, ts_max           ts_min, ts_max; the paper's min(x, d) in Alpha#29 is ts_min
    ts_argmax, ts_argmin     ts_argmax, ts_argmin: position 1..d, 1 the window's oldest day
    sum, product, stddev     ts_sum, ts_product, ts_std (ddof 1)
    decay_linear(x, d)       decay_linear(x, d): weights d, d-1, ..., 1 from today back
    scale(x)                 cs_scale(x)
    signedpower(x, a)        signed_power(x, a) for a literal a
    x ^ a                    x ** a for a literal a; for a non-literal exponent
                             (rank(a) ^ rank(b)) exp(b * log(a)), exact in meaning because
                             the base is a rank or ts_rank, so positive
    c ? a : b, ||            if_(c, a, b), or
    min(a, b), max(a, b)     min(a, b), max(a, b) element by element
    indneutralize(x, g)      cs_demean(x, by=g) (industry catalog only)
    returns                  close / lag(close, 1) - 1, a helper formula
    adv{d}                   ts_mean(close * volume, d): the average daily dollar volume

A non-integer window or lag d is floored, as the paper says ("d ... converted to floor(d)").
"""

from __future__ import annotations

import textwrap

ADV_WINDOWS = (5, 10, 15, 20, 30, 40, 50, 60, 81, 120, 150, 180)

HELPERS = [("returns", "close / lag(close, 1) - 1", "daily close-to-close return")] + [
    (f"adv{d}", f"ts_mean(close * volume, {d})", f"average daily dollar volume over {d} days")
    for d in ADV_WINDOWS
]

# Alpha#46, #49 and #51's trend term
_TREND = "((lag(close, 20) - lag(close, 10)) / 10 - (lag(close, 10) - close) / 10)"

# (number, the paper's expression, tracecalc's); an industry alpha's uses by=...
ALPHAS: list[tuple[int, str, str]] = [
    (1, "(rank(Ts_ArgMax(SignedPower(((returns < 0) ? stddev(returns, 20) : close), 2.), 5))"
        " - 0.5)",
     "cs_rank(ts_argmax(signed_power(if_(returns < 0, ts_std(returns, 20), close), 2), 5))"
     " - 0.5"),
    (2, "(-1 * correlation(rank(delta(log(volume), 2)), rank(((close - open) / open)), 6))",
     "-1 * ts_corr(cs_rank(diff(log(volume), 2)), cs_rank((close - open) / open), 6)"),
    (3, "(-1 * correlation(rank(open), rank(volume), 10))",
     "-1 * ts_corr(cs_rank(open), cs_rank(volume), 10)"),
    (4, "(-1 * Ts_Rank(rank(low), 9))", "-1 * ts_rank(cs_rank(low), 9)"),
    (5, "(rank((open - (sum(vwap, 10) / 10))) * (-1 * abs(rank((close - vwap)))))",
     "cs_rank(open - ts_sum(vwap, 10) / 10) * (-1 * abs(cs_rank(close - vwap)))"),
    (6, "(-1 * correlation(open, volume, 10))", "-1 * ts_corr(open, volume, 10)"),
    (7, "((adv20 < volume) ? ((-1 * ts_rank(abs(delta(close, 7)), 60)) * sign(delta(close, 7)))"
        " : (-1 * 1))",
     "if_(adv20 < volume, (-1 * ts_rank(abs(diff(close, 7)), 60)) * sign(diff(close, 7)), -1)"),
    (8, "(-1 * rank(((sum(open, 5) * sum(returns, 5)) - delay((sum(open, 5) * sum(returns, 5)),"
        " 10))))",
     "-1 * cs_rank(ts_sum(open, 5) * ts_sum(returns, 5)"
     " - lag(ts_sum(open, 5) * ts_sum(returns, 5), 10))"),
    (9, "((0 < ts_min(delta(close, 1), 5)) ? delta(close, 1) : ((ts_max(delta(close, 1), 5) < 0)"
        " ? delta(close, 1) : (-1 * delta(close, 1))))",
     "if_(0 < ts_min(diff(close, 1), 5), diff(close, 1),"
     " if_(ts_max(diff(close, 1), 5) < 0, diff(close, 1), -1 * diff(close, 1)))"),
    (10, "rank(((0 < ts_min(delta(close, 1), 4)) ? delta(close, 1) : ((ts_max(delta(close, 1),"
         " 4) < 0) ? delta(close, 1) : (-1 * delta(close, 1)))))",
     "cs_rank(if_(0 < ts_min(diff(close, 1), 4), diff(close, 1),"
     " if_(ts_max(diff(close, 1), 4) < 0, diff(close, 1), -1 * diff(close, 1))))"),
    (11, "((rank(ts_max((vwap - close), 3)) + rank(ts_min((vwap - close), 3))) *"
         " rank(delta(volume, 3)))",
     "(cs_rank(ts_max(vwap - close, 3)) + cs_rank(ts_min(vwap - close, 3)))"
     " * cs_rank(diff(volume, 3))"),
    (12, "(sign(delta(volume, 1)) * (-1 * delta(close, 1)))",
     "sign(diff(volume, 1)) * (-1 * diff(close, 1))"),
    (13, "(-1 * rank(covariance(rank(close), rank(volume), 5)))",
     "-1 * cs_rank(ts_cov(cs_rank(close), cs_rank(volume), 5))"),
    (14, "((-1 * rank(delta(returns, 3))) * correlation(open, volume, 10))",
     "(-1 * cs_rank(diff(returns, 3))) * ts_corr(open, volume, 10)"),
    (15, "(-1 * sum(rank(correlation(rank(high), rank(volume), 3)), 3))",
     "-1 * ts_sum(cs_rank(ts_corr(cs_rank(high), cs_rank(volume), 3)), 3)"),
    (16, "(-1 * rank(covariance(rank(high), rank(volume), 5)))",
     "-1 * cs_rank(ts_cov(cs_rank(high), cs_rank(volume), 5))"),
    (17, "(((-1 * rank(ts_rank(close, 10))) * rank(delta(delta(close, 1), 1))) *"
         " rank(ts_rank((volume / adv20), 5)))",
     "((-1 * cs_rank(ts_rank(close, 10))) * cs_rank(diff(diff(close, 1), 1)))"
     " * cs_rank(ts_rank(volume / adv20, 5))"),
    (18, "(-1 * rank(((stddev(abs((close - open)), 5) + (close - open)) + correlation(close,"
         " open, 10))))",
     "-1 * cs_rank(ts_std(abs(close - open), 5) + (close - open) + ts_corr(close, open, 10))"),
    (19, "((-1 * sign(((close - delay(close, 7)) + delta(close, 7)))) * (1 + rank((1 +"
         " sum(returns, 250)))))",
     "(-1 * sign((close - lag(close, 7)) + diff(close, 7)))"
     " * (1 + cs_rank(1 + ts_sum(returns, 250)))"),
    (20, "(((-1 * rank((open - delay(high, 1)))) * rank((open - delay(close, 1)))) *"
         " rank((open - delay(low, 1))))",
     "((-1 * cs_rank(open - lag(high, 1))) * cs_rank(open - lag(close, 1)))"
     " * cs_rank(open - lag(low, 1))"),
    (21, "((((sum(close, 8) / 8) + stddev(close, 8)) < (sum(close, 2) / 2)) ? (-1 * 1) :"
         " (((sum(close, 2) / 2) < ((sum(close, 8) / 8) - stddev(close, 8))) ? 1 : (((1 <"
         " (volume / adv20)) || ((volume / adv20) == 1)) ? 1 : (-1 * 1))))",
     "if_(ts_sum(close, 8) / 8 + ts_std(close, 8) < ts_sum(close, 2) / 2, -1,"
     " if_(ts_sum(close, 2) / 2 < ts_sum(close, 8) / 8 - ts_std(close, 8), 1,"
     " if_((1 < volume / adv20) or (volume / adv20 == 1), 1, -1)))"),
    (22, "(-1 * (delta(correlation(high, volume, 5), 5) * rank(stddev(close, 20))))",
     "-1 * (diff(ts_corr(high, volume, 5), 5) * cs_rank(ts_std(close, 20)))"),
    (23, "(((sum(high, 20) / 20) < high) ? (-1 * delta(high, 2)) : 0)",
     "if_(ts_sum(high, 20) / 20 < high, -1 * diff(high, 2), 0)"),
    (24, "((((delta((sum(close, 100) / 100), 100) / delay(close, 100)) < 0.05) ||"
         " ((delta((sum(close, 100) / 100), 100) / delay(close, 100)) == 0.05)) ? (-1 * (close -"
         " ts_min(close, 100))) : (-1 * delta(close, 3)))",
     "if_((diff(ts_sum(close, 100) / 100, 100) / lag(close, 100) < 0.05)"
     " or (diff(ts_sum(close, 100) / 100, 100) / lag(close, 100) == 0.05),"
     " -1 * (close - ts_min(close, 100)), -1 * diff(close, 3))"),
    (25, "rank(((((-1 * returns) * adv20) * vwap) * (high - close)))",
     "cs_rank((((-1 * returns) * adv20) * vwap) * (high - close))"),
    (26, "(-1 * ts_max(correlation(ts_rank(volume, 5), ts_rank(high, 5), 5), 3))",
     "-1 * ts_max(ts_corr(ts_rank(volume, 5), ts_rank(high, 5), 5), 3)"),
    (27, "((0.5 < rank((sum(correlation(rank(volume), rank(vwap), 6), 2) / 2.0))) ? (-1 * 1) :"
         " 1)",
     "if_(0.5 < cs_rank(ts_sum(ts_corr(cs_rank(volume), cs_rank(vwap), 6), 2) / 2.0), -1, 1)"),
    (28, "scale(((correlation(adv20, low, 5) + ((high + low) / 2)) - close))",
     "cs_scale(ts_corr(adv20, low, 5) + (high + low) / 2 - close)"),
    (29, "(min(product(rank(rank(scale(log(sum(ts_min(rank(rank((-1 * rank(delta((close - 1),"
         " 5))))), 2), 1))))), 1), 5) + ts_rank(delay((-1 * returns), 6), 5))",
     "ts_min(ts_product(cs_rank(cs_rank(cs_scale(log(ts_sum(ts_min(cs_rank(cs_rank(-1"
     " * cs_rank(diff(close - 1, 5)))), 2), 1))))), 1), 5) + ts_rank(lag(-1 * returns, 6), 5)"),
    (30, "(((1.0 - rank(((sign((close - delay(close, 1))) + sign((delay(close, 1) - delay(close,"
         " 2)))) + sign((delay(close, 2) - delay(close, 3)))))) * sum(volume, 5)) / sum(volume,"
         " 20))",
     "((1.0 - cs_rank(sign(close - lag(close, 1)) + sign(lag(close, 1) - lag(close, 2))"
     " + sign(lag(close, 2) - lag(close, 3)))) * ts_sum(volume, 5)) / ts_sum(volume, 20)"),
    (31, "((rank(rank(rank(decay_linear((-1 * rank(rank(delta(close, 10)))), 10)))) + rank((-1 *"
         " delta(close, 3)))) + sign(scale(correlation(adv20, low, 12))))",
     "cs_rank(cs_rank(cs_rank(decay_linear(-1 * cs_rank(cs_rank(diff(close, 10))), 10))))"
     " + cs_rank(-1 * diff(close, 3)) + sign(cs_scale(ts_corr(adv20, low, 12)))"),
    (32, "(scale(((sum(close, 7) / 7) - close)) + (20 * scale(correlation(vwap, delay(close, 5),"
         " 230))))",
     "cs_scale(ts_sum(close, 7) / 7 - close) + 20 * cs_scale(ts_corr(vwap, lag(close, 5), 230))"),
    (33, "rank((-1 * ((1 - (open / close))^1)))", "cs_rank(-1 * (1 - open / close) ** 1)"),
    (34, "rank(((1 - rank((stddev(returns, 2) / stddev(returns, 5)))) + (1 - rank(delta(close,"
         " 1)))))",
     "cs_rank((1 - cs_rank(ts_std(returns, 2) / ts_std(returns, 5)))"
     " + (1 - cs_rank(diff(close, 1))))"),
    (35, "((Ts_Rank(volume, 32) * (1 - Ts_Rank(((close + high) - low), 16))) * (1 -"
         " Ts_Rank(returns, 32)))",
     "(ts_rank(volume, 32) * (1 - ts_rank(close + high - low, 16))) * (1 - ts_rank(returns, 32))"),
    (36, "(((((2.21 * rank(correlation((close - open), delay(volume, 1), 15))) + (0.7 *"
         " rank((open - close)))) + (0.73 * rank(Ts_Rank(delay((-1 * returns), 6), 5)))) +"
         " rank(abs(correlation(vwap, adv20, 6)))) + (0.6 * rank((((sum(close, 200) / 200) -"
         " open) * (close - open)))))",
     "2.21 * cs_rank(ts_corr(close - open, lag(volume, 1), 15)) + 0.7 * cs_rank(open - close)"
     " + 0.73 * cs_rank(ts_rank(lag(-1 * returns, 6), 5)) + cs_rank(abs(ts_corr(vwap, adv20, 6)))"
     " + 0.6 * cs_rank((ts_sum(close, 200) / 200 - open) * (close - open))"),
    (37, "(rank(correlation(delay((open - close), 1), close, 200)) + rank((open - close)))",
     "cs_rank(ts_corr(lag(open - close, 1), close, 200)) + cs_rank(open - close)"),
    (38, "((-1 * rank(Ts_Rank(close, 10))) * rank((close / open)))",
     "(-1 * cs_rank(ts_rank(close, 10))) * cs_rank(close / open)"),
    (39, "((-1 * rank((delta(close, 7) * (1 - rank(decay_linear((volume / adv20), 9)))))) * (1 +"
         " rank(sum(returns, 250))))",
     "(-1 * cs_rank(diff(close, 7) * (1 - cs_rank(decay_linear(volume / adv20, 9)))))"
     " * (1 + cs_rank(ts_sum(returns, 250)))"),
    (40, "((-1 * rank(stddev(high, 10))) * correlation(high, volume, 10))",
     "(-1 * cs_rank(ts_std(high, 10))) * ts_corr(high, volume, 10)"),
    (41, "(((high * low)^0.5) - vwap)", "(high * low) ** 0.5 - vwap"),
    (42, "(rank((vwap - close)) / rank((vwap + close)))",
     "cs_rank(vwap - close) / cs_rank(vwap + close)"),
    (43, "(ts_rank((volume / adv20), 20) * ts_rank((-1 * delta(close, 7)), 8))",
     "ts_rank(volume / adv20, 20) * ts_rank(-1 * diff(close, 7), 8)"),
    (44, "(-1 * correlation(high, rank(volume), 5))", "-1 * ts_corr(high, cs_rank(volume), 5)"),
    (45, "(-1 * ((rank((sum(delay(close, 5), 20) / 20)) * correlation(close, volume, 2)) *"
         " rank(correlation(sum(close, 5), sum(close, 20), 2))))",
     "-1 * ((cs_rank(ts_sum(lag(close, 5), 20) / 20) * ts_corr(close, volume, 2))"
     " * cs_rank(ts_corr(ts_sum(close, 5), ts_sum(close, 20), 2)))"),
    (46, "((0.25 < (((delay(close, 20) - delay(close, 10)) / 10) - ((delay(close, 10) - close) /"
         " 10))) ? (-1 * 1) : (((((delay(close, 20) - delay(close, 10)) / 10) - ((delay(close, 10)"
         " - close) / 10)) < 0) ? 1 : ((-1 * 1) * (close - delay(close, 1)))))",
     f"if_(0.25 < {_TREND}, -1, if_({_TREND} < 0, 1, (-1 * 1) * (close - lag(close, 1))))"),
    (47, "((((rank((1 / close)) * volume) / adv20) * ((high * rank((high - close))) / (sum(high,"
         " 5) / 5))) - rank((vwap - delay(vwap, 5))))",
     "((cs_rank(1 / close) * volume) / adv20) * ((high * cs_rank(high - close))"
     " / (ts_sum(high, 5) / 5)) - cs_rank(vwap - lag(vwap, 5))"),
    (48, "(indneutralize(((correlation(delta(close, 1), delta(delay(close, 1), 1), 250) *"
         " delta(close, 1)) / close), IndClass.subindustry) / sum(((delta(close, 1) /"
         " delay(close, 1))^2), 250))",
     "cs_demean((ts_corr(diff(close, 1), diff(lag(close, 1), 1), 250) * diff(close, 1)) / close,"
     " by=subindustry) / ts_sum((diff(close, 1) / lag(close, 1)) ** 2, 250)"),
    (49, "(((((delay(close, 20) - delay(close, 10)) / 10) - ((delay(close, 10) - close) / 10)) <"
         " (-1 * 0.1)) ? 1 : ((-1 * 1) * (close - delay(close, 1))))",
     f"if_({_TREND} < -1 * 0.1, 1, (-1 * 1) * (close - lag(close, 1)))"),
    (50, "(-1 * ts_max(rank(correlation(rank(volume), rank(vwap), 5)), 5))",
     "-1 * ts_max(cs_rank(ts_corr(cs_rank(volume), cs_rank(vwap), 5)), 5)"),
    (51, "(((((delay(close, 20) - delay(close, 10)) / 10) - ((delay(close, 10) - close) / 10)) <"
         " (-1 * 0.05)) ? 1 : ((-1 * 1) * (close - delay(close, 1))))",
     f"if_({_TREND} < -1 * 0.05, 1, (-1 * 1) * (close - lag(close, 1)))"),
    (52, "((((-1 * ts_min(low, 5)) + delay(ts_min(low, 5), 5)) * rank(((sum(returns, 240) -"
         " sum(returns, 20)) / 220))) * ts_rank(volume, 5))",
     "((-1 * ts_min(low, 5) + lag(ts_min(low, 5), 5))"
     " * cs_rank((ts_sum(returns, 240) - ts_sum(returns, 20)) / 220)) * ts_rank(volume, 5)"),
    (53, "(-1 * delta((((close - low) - (high - close)) / (close - low)), 9))",
     "-1 * diff(((close - low) - (high - close)) / (close - low), 9)"),
    (54, "((-1 * ((low - close) * (open^5))) / ((low - high) * (close^5)))",
     "(-1 * ((low - close) * open ** 5)) / ((low - high) * close ** 5)"),
    (55, "(-1 * correlation(rank(((close - ts_min(low, 12)) / (ts_max(high, 12) - ts_min(low,"
         " 12)))), rank(volume), 6))",
     "-1 * ts_corr(cs_rank((close - ts_min(low, 12)) / (ts_max(high, 12) - ts_min(low, 12))),"
     " cs_rank(volume), 6)"),
    (57, "(0 - (1 * ((close - vwap) / decay_linear(rank(ts_argmax(close, 30)), 2))))",
     "0 - 1 * ((close - vwap) / decay_linear(cs_rank(ts_argmax(close, 30)), 2))"),
    (58, "(-1 * Ts_Rank(decay_linear(correlation(IndNeutralize(vwap, IndClass.sector), volume,"
         " 3.92795), 7.89291), 5.50322))",
     "-1 * ts_rank(decay_linear(ts_corr(cs_demean(vwap, by=sector), volume, 3), 7), 5)"),
    (59, "(-1 * Ts_Rank(decay_linear(correlation(IndNeutralize(((vwap * 0.728317) + (vwap * (1 -"
         " 0.728317))), IndClass.industry), volume, 4.25197), 16.2289), 8.19648))",
     "-1 * ts_rank(decay_linear(ts_corr(cs_demean(vwap * 0.728317 + vwap * (1 - 0.728317),"
     " by=industry), volume, 4), 16), 8)"),
    (60, "(0 - (1 * ((2 * scale(rank(((((close - low) - (high - close)) / (high - low)) *"
         " volume)))) - scale(rank(ts_argmax(close, 10))))))",
     "0 - 1 * (2 * cs_scale(cs_rank((((close - low) - (high - close)) / (high - low)) * volume))"
     " - cs_scale(cs_rank(ts_argmax(close, 10))))"),
    (61, "(rank((vwap - ts_min(vwap, 16.1219))) < rank(correlation(vwap, adv180, 17.9282)))",
     "cs_rank(vwap - ts_min(vwap, 16)) < cs_rank(ts_corr(vwap, adv180, 17))"),
    (62, "((rank(correlation(vwap, sum(adv20, 22.4101), 9.91009)) < rank(((rank(open) +"
         " rank(open)) < (rank(((high + low) / 2)) + rank(high))))) * -1)",
     "(cs_rank(ts_corr(vwap, ts_sum(adv20, 22), 9)) < cs_rank((cs_rank(open) + cs_rank(open))"
     " < (cs_rank((high + low) / 2) + cs_rank(high)))) * -1"),
    (63, "((rank(decay_linear(delta(IndNeutralize(close, IndClass.industry), 2.25164), 8.22237))"
         " - rank(decay_linear(correlation(((vwap * 0.318108) + (open * (1 - 0.318108))),"
         " sum(adv180, 37.2467), 13.557), 12.2883))) * -1)",
     "(cs_rank(decay_linear(diff(cs_demean(close, by=industry), 2), 8))"
     " - cs_rank(decay_linear(ts_corr(vwap * 0.318108 + open * (1 - 0.318108),"
     " ts_sum(adv180, 37), 13), 12))) * -1"),
    (64, "((rank(correlation(sum(((open * 0.178404) + (low * (1 - 0.178404))), 12.7054),"
         " sum(adv120, 12.7054), 16.6208)) < rank(delta(((((high + low) / 2) * 0.178404) + (vwap"
         " * (1 - 0.178404))), 3.69741))) * -1)",
     "(cs_rank(ts_corr(ts_sum(open * 0.178404 + low * (1 - 0.178404), 12), ts_sum(adv120, 12),"
     " 16)) < cs_rank(diff((high + low) / 2 * 0.178404 + vwap * (1 - 0.178404), 3))) * -1"),
    (65, "((rank(correlation(((open * 0.00817205) + (vwap * (1 - 0.00817205))), sum(adv60,"
         " 8.6911), 6.40374)) < rank((open - ts_min(open, 13.635)))) * -1)",
     "(cs_rank(ts_corr(open * 0.00817205 + vwap * (1 - 0.00817205), ts_sum(adv60, 8), 6))"
     " < cs_rank(open - ts_min(open, 13))) * -1"),
    (66, "((rank(decay_linear(delta(vwap, 3.51013), 7.23052)) + Ts_Rank(decay_linear(((((low *"
         " 0.96633) + (low * (1 - 0.96633))) - vwap) / (open - ((high + low) / 2))), 11.4157),"
         " 6.72611)) * -1)",
     "(cs_rank(decay_linear(diff(vwap, 3), 7)) + ts_rank(decay_linear((low * 0.96633"
     " + low * (1 - 0.96633) - vwap) / (open - (high + low) / 2), 11), 6)) * -1"),
    (67, "((rank((high - ts_min(high, 2.14593)))^rank(correlation(IndNeutralize(vwap,"
         " IndClass.sector), IndNeutralize(adv20, IndClass.subindustry), 6.02936))) * -1)",
     "exp(cs_rank(ts_corr(cs_demean(vwap, by=sector), cs_demean(adv20, by=subindustry), 6))"
     " * log(cs_rank(high - ts_min(high, 2)))) * -1"),
    (68, "((Ts_Rank(correlation(rank(high), rank(adv15), 8.91644), 13.9333) < rank(delta(((close"
         " * 0.518371) + (low * (1 - 0.518371))), 1.06157))) * -1)",
     "(ts_rank(ts_corr(cs_rank(high), cs_rank(adv15), 8), 13)"
     " < cs_rank(diff(close * 0.518371 + low * (1 - 0.518371), 1))) * -1"),
    (69, "((rank(ts_max(delta(IndNeutralize(vwap, IndClass.industry), 2.72412), 4.79344))^"
         "Ts_Rank(correlation(((close * 0.490655) + (vwap * (1 - 0.490655))), adv20, 4.92416),"
         " 9.0615)) * -1)",
     "exp(ts_rank(ts_corr(close * 0.490655 + vwap * (1 - 0.490655), adv20, 4), 9)"
     " * log(cs_rank(ts_max(diff(cs_demean(vwap, by=industry), 2), 4)))) * -1"),
    (70, "((rank(delta(vwap, 1.29456))^Ts_Rank(correlation(IndNeutralize(close,"
         " IndClass.industry), adv50, 17.8256), 17.9171)) * -1)",
     "exp(ts_rank(ts_corr(cs_demean(close, by=industry), adv50, 17), 17)"
     " * log(cs_rank(diff(vwap, 1)))) * -1"),
    (71, "max(Ts_Rank(decay_linear(correlation(Ts_Rank(close, 3.43976), Ts_Rank(adv180,"
         " 12.0647), 18.0175), 4.20501), 15.6948), Ts_Rank(decay_linear((rank(((low + open) -"
         " (vwap + vwap)))^2), 16.4662), 4.4388))",
     "max(ts_rank(decay_linear(ts_corr(ts_rank(close, 3), ts_rank(adv180, 12), 18), 4), 15),"
     " ts_rank(decay_linear(cs_rank(low + open - (vwap + vwap)) ** 2, 16), 4))"),
    (72, "(rank(decay_linear(correlation(((high + low) / 2), adv40, 8.93345), 10.1519)) /"
         " rank(decay_linear(correlation(Ts_Rank(vwap, 3.72469), Ts_Rank(volume, 18.5188),"
         " 6.86671), 2.95011)))",
     "cs_rank(decay_linear(ts_corr((high + low) / 2, adv40, 8), 10))"
     " / cs_rank(decay_linear(ts_corr(ts_rank(vwap, 3), ts_rank(volume, 18), 6), 2))"),
    (73, "(max(rank(decay_linear(delta(vwap, 4.72775), 2.91864)),"
         " Ts_Rank(decay_linear(((delta(((open * 0.147155) + (low * (1 - 0.147155))), 2.03608)"
         " / ((open * 0.147155) + (low * (1 - 0.147155)))) * -1), 3.33829), 16.7411)) * -1)",
     "max(cs_rank(decay_linear(diff(vwap, 4), 2)),"
     " ts_rank(decay_linear((diff(open * 0.147155 + low * (1 - 0.147155), 2)"
     " / (open * 0.147155 + low * (1 - 0.147155))) * -1, 3), 16)) * -1"),
    (74, "((rank(correlation(close, sum(adv30, 37.4843), 15.1365)) <"
         " rank(correlation(rank(((high * 0.0261661) + (vwap * (1 - 0.0261661)))), rank(volume),"
         " 11.4791))) * -1)",
     "(cs_rank(ts_corr(close, ts_sum(adv30, 37), 15))"
     " < cs_rank(ts_corr(cs_rank(high * 0.0261661 + vwap * (1 - 0.0261661)), cs_rank(volume),"
     " 11))) * -1"),
    (75, "(rank(correlation(vwap, volume, 4.24304)) < rank(correlation(rank(low), rank(adv50),"
         " 12.4413)))",
     "cs_rank(ts_corr(vwap, volume, 4)) < cs_rank(ts_corr(cs_rank(low), cs_rank(adv50), 12))"),
    (76, "(max(rank(decay_linear(delta(vwap, 1.24383), 11.8259)),"
         " Ts_Rank(decay_linear(Ts_Rank(correlation(IndNeutralize(low, IndClass.sector), adv81,"
         " 8.14941), 19.569), 17.1543), 19.383)) * -1)",
     "max(cs_rank(decay_linear(diff(vwap, 1), 11)),"
     " ts_rank(decay_linear(ts_rank(ts_corr(cs_demean(low, by=sector), adv81, 8), 19), 17), 19))"
     " * -1"),
    (77, "min(rank(decay_linear(((((high + low) / 2) + high) - (vwap + high)), 20.0451)),"
         " rank(decay_linear(correlation(((high + low) / 2), adv40, 3.1614), 5.64125)))",
     "min(cs_rank(decay_linear((high + low) / 2 + high - (vwap + high), 20)),"
     " cs_rank(decay_linear(ts_corr((high + low) / 2, adv40, 3), 5)))"),
    (78, "(rank(correlation(sum(((low * 0.352233) + (vwap * (1 - 0.352233))), 19.7428),"
         " sum(adv40, 19.7428), 6.83313))^rank(correlation(rank(vwap), rank(volume), 5.77492)))",
     "exp(cs_rank(ts_corr(cs_rank(vwap), cs_rank(volume), 5))"
     " * log(cs_rank(ts_corr(ts_sum(low * 0.352233 + vwap * (1 - 0.352233), 19),"
     " ts_sum(adv40, 19), 6))))"),
    (79, "(rank(delta(IndNeutralize(((close * 0.60733) + (open * (1 - 0.60733))),"
         " IndClass.sector), 1.23438)) < rank(correlation(Ts_Rank(vwap, 3.60973), Ts_Rank(adv150,"
         " 9.18637), 14.6644)))",
     "cs_rank(diff(cs_demean(close * 0.60733 + open * (1 - 0.60733), by=sector), 1))"
     " < cs_rank(ts_corr(ts_rank(vwap, 3), ts_rank(adv150, 9), 14))"),
    (80, "((rank(Sign(delta(IndNeutralize(((open * 0.868128) + (high * (1 - 0.868128))),"
         " IndClass.industry), 4.04545)))^Ts_Rank(correlation(high, adv10, 5.11456), 5.53756))"
         " * -1)",
     "exp(ts_rank(ts_corr(high, adv10, 5), 5) * log(cs_rank(sign(diff(cs_demean(open"
     " * 0.868128 + high * (1 - 0.868128), by=industry), 4))))) * -1"),
    (81, "((rank(Log(product(rank((rank(correlation(vwap, sum(adv10, 49.6054), 8.47743))^4)),"
         " 14.9655))) < rank(correlation(rank(vwap), rank(volume), 5.07914))) * -1)",
     "(cs_rank(log(ts_product(cs_rank(cs_rank(ts_corr(vwap, ts_sum(adv10, 49), 8)) ** 4), 14)))"
     " < cs_rank(ts_corr(cs_rank(vwap), cs_rank(volume), 5))) * -1"),
    (82, "(min(rank(decay_linear(delta(open, 1.46063), 14.8717)),"
         " Ts_Rank(decay_linear(correlation(IndNeutralize(volume, IndClass.sector), ((open *"
         " 0.634196) + (open * (1 - 0.634196))), 17.4842), 6.92131), 13.4283)) * -1)",
     "min(cs_rank(decay_linear(diff(open, 1), 14)),"
     " ts_rank(decay_linear(ts_corr(cs_demean(volume, by=sector), open * 0.634196"
     " + open * (1 - 0.634196), 17), 6), 13)) * -1"),
    (83, "((rank(delay(((high - low) / (sum(close, 5) / 5)), 2)) * rank(rank(volume))) / (((high"
         " - low) / (sum(close, 5) / 5)) / (vwap - close)))",
     "(cs_rank(lag((high - low) / (ts_sum(close, 5) / 5), 2)) * cs_rank(cs_rank(volume)))"
     " / (((high - low) / (ts_sum(close, 5) / 5)) / (vwap - close))"),
    (84, "SignedPower(Ts_Rank((vwap - ts_max(vwap, 15.3217)), 20.7127), delta(close, 4.96796))",
     "exp(diff(close, 4) * log(ts_rank(vwap - ts_max(vwap, 15), 20)))"),
    (85, "(rank(correlation(((high * 0.876703) + (close * (1 - 0.876703))), adv30, 9.61331))^"
         "rank(correlation(Ts_Rank(((high + low) / 2), 3.70596), Ts_Rank(volume, 10.1341),"
         " 7.11408)))",
     "exp(cs_rank(ts_corr(ts_rank((high + low) / 2, 3), ts_rank(volume, 10), 7))"
     " * log(cs_rank(ts_corr(high * 0.876703 + close * (1 - 0.876703), adv30, 9))))"),
    (86, "((Ts_Rank(correlation(close, sum(adv20, 14.7444), 6.00049), 20.4195) < rank(((open +"
         " close) - (vwap + open)))) * -1)",
     "(ts_rank(ts_corr(close, ts_sum(adv20, 14), 6), 20) < cs_rank(open + close - (vwap + open)))"
     " * -1"),
    (87, "(max(rank(decay_linear(delta(((close * 0.369701) + (vwap * (1 - 0.369701))), 1.91233),"
         " 2.65461)), Ts_Rank(decay_linear(abs(correlation(IndNeutralize(adv81,"
         " IndClass.industry), close, 13.4132)), 4.89768), 14.4535)) * -1)",
     "max(cs_rank(decay_linear(diff(close * 0.369701 + vwap * (1 - 0.369701), 1), 2)),"
     " ts_rank(decay_linear(abs(ts_corr(cs_demean(adv81, by=industry), close, 13)), 4), 14))"
     " * -1"),
    (88, "min(rank(decay_linear(((rank(open) + rank(low)) - (rank(high) + rank(close))),"
         " 8.06882)), Ts_Rank(decay_linear(correlation(Ts_Rank(close, 8.44728), Ts_Rank(adv60,"
         " 20.6966), 8.01266), 6.65053), 2.61957))",
     "min(cs_rank(decay_linear(cs_rank(open) + cs_rank(low) - (cs_rank(high) + cs_rank(close)),"
     " 8)), ts_rank(decay_linear(ts_corr(ts_rank(close, 8), ts_rank(adv60, 20), 8), 6), 2))"),
    (89, "(Ts_Rank(decay_linear(correlation(((low * 0.967285) + (low * (1 - 0.967285))), adv10,"
         " 6.94279), 5.51607), 3.79744) - Ts_Rank(decay_linear(delta(IndNeutralize(vwap,"
         " IndClass.industry), 3.48158), 10.1466), 15.3012))",
     "ts_rank(decay_linear(ts_corr(low * 0.967285 + low * (1 - 0.967285), adv10, 6), 5), 3)"
     " - ts_rank(decay_linear(diff(cs_demean(vwap, by=industry), 3), 10), 15)"),
    (90, "((rank((close - ts_max(close, 4.66719)))^Ts_Rank(correlation(IndNeutralize(adv40,"
         " IndClass.subindustry), low, 5.38375), 3.21856)) * -1)",
     "exp(ts_rank(ts_corr(cs_demean(adv40, by=subindustry), low, 5), 3)"
     " * log(cs_rank(close - ts_max(close, 4)))) * -1"),
    (91, "((Ts_Rank(decay_linear(decay_linear(correlation(IndNeutralize(close,"
         " IndClass.industry), volume, 9.74928), 16.398), 3.83219), 4.8667) -"
         " rank(decay_linear(correlation(vwap, adv30, 4.01303), 2.6809))) * -1)",
     "(ts_rank(decay_linear(decay_linear(ts_corr(cs_demean(close, by=industry), volume, 9), 16),"
     " 3), 4) - cs_rank(decay_linear(ts_corr(vwap, adv30, 4), 2))) * -1"),
    (92, "min(Ts_Rank(decay_linear(((((high + low) / 2) + close) < (low + open)), 14.7221),"
         " 18.8683), Ts_Rank(decay_linear(correlation(rank(low), rank(adv30), 7.58555), 6.94024),"
         " 6.80584))",
     "min(ts_rank(decay_linear((high + low) / 2 + close < low + open, 14), 18),"
     " ts_rank(decay_linear(ts_corr(cs_rank(low), cs_rank(adv30), 7), 6), 6))"),
    (93, "(Ts_Rank(decay_linear(correlation(IndNeutralize(vwap, IndClass.industry), adv81,"
         " 17.4193), 19.848), 7.54455) / rank(decay_linear(delta(((close * 0.524434) + (vwap * (1"
         " - 0.524434))), 2.77377), 16.2664)))",
     "ts_rank(decay_linear(ts_corr(cs_demean(vwap, by=industry), adv81, 17), 19), 7)"
     " / cs_rank(decay_linear(diff(close * 0.524434 + vwap * (1 - 0.524434), 2), 16))"),
    (94, "((rank((vwap - ts_min(vwap, 11.5783)))^Ts_Rank(correlation(Ts_Rank(vwap, 19.6462),"
         " Ts_Rank(adv60, 4.02992), 18.0926), 2.70756)) * -1)",
     "exp(ts_rank(ts_corr(ts_rank(vwap, 19), ts_rank(adv60, 4), 18), 2)"
     " * log(cs_rank(vwap - ts_min(vwap, 11)))) * -1"),
    (95, "(rank((open - ts_min(open, 12.4105))) < Ts_Rank((rank(correlation(sum(((high + low) /"
         " 2), 19.1351), sum(adv40, 19.1351), 12.8742))^5), 11.7584))",
     "cs_rank(open - ts_min(open, 12)) < ts_rank(cs_rank(ts_corr(ts_sum((high + low) / 2, 19),"
     " ts_sum(adv40, 19), 12)) ** 5, 11)"),
    (96, "(max(Ts_Rank(decay_linear(correlation(rank(vwap), rank(volume), 3.83878), 4.16783),"
         " 8.38151), Ts_Rank(decay_linear(Ts_ArgMax(correlation(Ts_Rank(close, 7.45404),"
         " Ts_Rank(adv60, 4.13242), 3.65459), 12.6556), 14.0365), 13.4143)) * -1)",
     "max(ts_rank(decay_linear(ts_corr(cs_rank(vwap), cs_rank(volume), 3), 4), 8),"
     " ts_rank(decay_linear(ts_argmax(ts_corr(ts_rank(close, 7), ts_rank(adv60, 4), 3), 12), 14),"
     " 13)) * -1"),
    (97, "((rank(decay_linear(delta(IndNeutralize(((low * 0.721001) + (vwap * (1 - 0.721001))),"
         " IndClass.industry), 3.3705), 20.4523)) - Ts_Rank(decay_linear(Ts_Rank(correlation("
         "Ts_Rank(low, 7.87871), Ts_Rank(adv60, 17.255), 4.97547), 18.5925), 15.7152), 6.71659))"
         " * -1)",
     "(cs_rank(decay_linear(diff(cs_demean(low * 0.721001 + vwap * (1 - 0.721001), by=industry),"
     " 3), 20)) - ts_rank(decay_linear(ts_rank(ts_corr(ts_rank(low, 7), ts_rank(adv60, 17), 4),"
     " 18), 15), 6)) * -1"),
    (98, "(rank(decay_linear(correlation(vwap, sum(adv5, 26.4719), 4.58418), 7.18088)) -"
         " rank(decay_linear(Ts_Rank(Ts_ArgMin(correlation(rank(open), rank(adv15), 20.8187),"
         " 8.62571), 6.95668), 8.07206)))",
     "cs_rank(decay_linear(ts_corr(vwap, ts_sum(adv5, 26), 4), 7))"
     " - cs_rank(decay_linear(ts_rank(ts_argmin(ts_corr(cs_rank(open), cs_rank(adv15), 20), 8),"
     " 6), 8))"),
    (99, "((rank(correlation(sum(((high + low) / 2), 19.8975), sum(adv60, 19.8975), 8.8136)) <"
         " rank(correlation(low, volume, 6.28259))) * -1)",
     "(cs_rank(ts_corr(ts_sum((high + low) / 2, 19), ts_sum(adv60, 19), 8))"
     " < cs_rank(ts_corr(low, volume, 6))) * -1"),
    (100, "(0 - (1 * (((1.5 * scale(indneutralize(indneutralize(rank(((((close - low) - (high -"
          " close)) / (high - low)) * volume)), IndClass.subindustry), IndClass.subindustry))) -"
          " scale(indneutralize((correlation(close, rank(adv20), 5) - rank(ts_argmin(close,"
          " 30))), IndClass.subindustry))) * (volume / adv20))))",
     "0 - 1 * ((1.5 * cs_scale(cs_demean(cs_demean(cs_rank((((close - low) - (high - close))"
     " / (high - low)) * volume), by=subindustry), by=subindustry))"
     " - cs_scale(cs_demean(ts_corr(close, cs_rank(adv20), 5) - cs_rank(ts_argmin(close, 30)),"
     " by=subindustry))) * (volume / adv20))"),
    (101, "((close - open) / ((high - low) + .001))", "(close - open) / ((high - low) + 0.001)"),
]

# Alpha#56 reads the market capitalisation, which the sample data has no item for
NOT_EXPRESSIBLE = {
    56: ("(0 - (1 * (rank((sum(returns, 10) / sum(sum(returns, 2), 3))) * rank((returns *"
         " cap)))))",
         "needs the market capitalisation `cap`, which ohlcv.csv does not have; with a daily"
         " item cap it is: 0 - 1 * (cs_rank(ts_sum(returns, 10) / ts_sum(ts_sum(returns, 2), 3))"
         " * cs_rank(returns * cap))"),
}


def is_industry(expr: str) -> bool:
    return "by=" in expr


def _rows(alphas) -> list[tuple[str, str, str]]:
    return [(f"alpha{n:03d}", expr, f"Alpha#{n} (Kakushadze 2016): {paper}")
            for n, paper, expr in alphas]


def alpha101() -> list[tuple[str, str, str]]:
    """(name, expression, description): the helpers, then every alpha the language
    expresses today, in the paper's order."""
    return HELPERS + _rows(a for a in ALPHAS if not is_industry(a[2]))


def alpha101_industry() -> list[tuple[str, str, str]]:
    """The alphas that neutralise within sectors, industries or sub-industries."""
    return _rows(a for a in ALPHAS if is_industry(a[2]))


def _numbers(industry: bool, indent: str) -> str:
    """The alphas' numbers, wrapped into comment lines."""
    text = ", ".join(str(n) for n, _, e in ALPHAS if is_industry(e) == industry) + "."
    return "\n".join(textwrap.wrap(text, 92, initial_indent=f"#{indent}",
                                    subsequent_indent=f"#{indent}"))


ALPHA101_HEADER = f"""\
# The 101 Formulaic Alphas (Z. Kakushadze, "101 Formulaic Alphas", Wilmott 2016,
# arXiv:1601.00991) in the formula language, over the daily items open, high, low, close,
# volume, vwap of sample_data/ohlcv.csv, with the helper formulas returns and adv{{d}}
# (average daily dollar volume: ts_mean(close * volume, d)). Each description quotes the
# paper's expression. Written by scripts/make_sample_data.py (scripts/alpha101_catalog.py
# holds the table and how each of the paper's operators maps; docs/formula-language.md
# pins their semantics). A non-integer window is floored, as the paper says.
#
# Here: {len([a for a in ALPHAS if not is_industry(a[2])])} alphas:
{_numbers(False, " ")}
#
# Not here:
# - the {len(alpha101_industry())} alphas that neutralise against an industry classification
#   (indneutralize(x, IndClass.sector / industry / subindustry)):
{_numbers(True, "   ")}
#   They are in catalogs/alpha101_industry.yaml, written with cs_demean(x, by=ATTRIBUTE),
#   which the language does not have yet (issue 14), and need the entity attributes sector,
#   industry and subindustry.
# - Alpha#56: it reads the market capitalisation cap, which ohlcv.csv does not have.
"""

ALPHA101_INDUSTRY_HEADER = f"""\
# The {len(alpha101_industry())} alphas of the 101 Formulaic Alphas (Kakushadze 2016) that
# neutralise against an industry classification: the paper's indneutralize(x, IndClass.g) is
# cs_demean(x, by=g) with g one of sector, industry, subindustry (entity attributes).
# The attributes come with ohlcv.csv's entities: load-entities ohlcv_entities.csv before
# these. They read the helpers of catalogs/alpha101.yaml (returns, adv{{d}}): load that one
# first. Written by scripts/make_sample_data.py.
"""
