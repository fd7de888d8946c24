"""Write the tracecalc sample data set: fictional companies, quarterly items and formulas.

Usage::

    python scripts/make_sample_data.py [--out sample_data]

Writes ``entities.csv``, ``data.csv``, ``formulas.csv`` and the other files that
sample_data/README.md lists (``ohlcv.csv``, ``catalogs/alpha158.yaml``, ...) into the output
directory (by default the repository's ``sample_data``). Everything comes from seeded
generators and is written in a fixed order with fixed number formatting, so two runs give
byte-identical files.

The companies are made up. Each one is simulated quarter by quarter: revenue follows a
company-specific growth trend with sector seasonality, macro shocks and noise; costs are
sector-typical shares of revenue with a fixed part (operating leverage); net income comes
after interest, tax and the occasional write-down; equity rolls forward with net income,
payouts and share issues; the share price mean-reverts towards a value set by earnings and
sales while following a common market factor. Four burn-in quarters (2015) are simulated
first so trailing figures are warm, then dropped.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import alpha101_catalog as a101
import numpy as np
import pandas as pd

SEED = 20261122
N_QUARTERS = 40  # 2016-03-31 .. 2025-12-31
BURN_IN = 4  # simulated 2015 quarters, not written
N_SIM = BURN_IN + N_QUARTERS
LAST_PERIOD = "2025-12-31"
MISSING_RATE = 0.009  # single values omitted at random (plus two whole late filings)
LATE_FILINGS = 2  # entity-quarters with every item missing
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "sample_data"

ITEMS = (
    "revenue",
    "cogs",
    "opex",
    "net_income",
    "total_assets",
    "equity",
    "debt",
    "cash",
    "shares_outstanding",
    "close",
)

# All simulated quarter ends, burn-in included; index k in the simulation.
SIM_PERIODS = [
    d.strftime("%Y-%m-%d") for d in pd.date_range(end=LAST_PERIOD, periods=N_SIM, freq="QE")
]
PERIODS = SIM_PERIODS[BURN_IN:]


def k_of(period: str) -> int:
    """Simulation index of a quarter-end date."""
    return SIM_PERIODS.index(period)


# --------------------------------------------------------------------------------------------
# Sectors and companies


@dataclass(frozen=True)
class Sector:
    name: str
    cogs: float  # cost of goods sold / revenue
    opex: float  # operating expenses / revenue
    growth: float  # mean annual revenue growth
    noise: float  # quarterly log-revenue noise
    season: tuple[float, float, float, float]  # log-revenue offsets for Q1..Q4
    covid: float  # log-revenue hit in 2020-Q2 (40% of it in Q1), fading by half each quarter
    oil_beta: float  # sensitivity of log revenue to the oil-price factor
    fixed_cogs: float  # share of cogs that follows smoothed, not current, revenue
    assets: float  # total assets / annual revenue at the start
    equity: float  # equity / total assets at the start
    debt: float  # debt / total assets at the start
    cash: float  # typical cash / total assets
    payout: float  # dividends and buybacks / positive net income
    pe: float  # fair price-to-earnings multiple
    ps: float  # value per unit of revenue on top of earnings value
    vol: float  # idiosyncratic quarterly log-price volatility


SECTORS = {
    s.name: s
    for s in (
        Sector("Technology", 0.40, 0.36, 0.11, 0.035, (-0.04, -0.01, 0.00, 0.05), 0.02, 0.0,
               0.20, 1.4, 0.55, 0.15, 0.30, 0.45, 26, 1.2, 0.13),
        Sector("Healthcare", 0.38, 0.40, 0.06, 0.030, (-0.02, 0.00, 0.00, 0.02), -0.06, 0.0,
               0.20, 1.7, 0.45, 0.25, 0.18, 0.50, 22, 0.8, 0.11),
        Sector("Industrials", 0.70, 0.18, 0.04, 0.030, (-0.05, 0.02, -0.01, 0.04), -0.16, 0.10,
               0.15, 1.1, 0.35, 0.30, 0.08, 0.50, 17, 0.35, 0.10),
        Sector("Consumer Staples", 0.58, 0.27, 0.03, 0.020, (-0.03, 0.01, 0.02, 0.00), 0.04,
               0.0, 0.10, 1.0, 0.35, 0.32, 0.07, 0.70, 21, 0.6, 0.07),
        Sector("Consumer Discretionary", 0.62, 0.27, 0.06, 0.040, (-0.08, -0.03, -0.01, 0.12),
               -0.30, 0.0, 0.10, 0.9, 0.32, 0.28, 0.10, 0.50, 19, 0.4, 0.13),
        Sector("Energy", 0.72, 0.12, 0.02, 0.050, (0.02, -0.02, 0.01, -0.01), -0.05, 0.70,
               0.35, 1.6, 0.45, 0.27, 0.07, 0.60, 11, 0.3, 0.14),
        Sector("Materials", 0.71, 0.14, 0.03, 0.040, (-0.04, 0.03, 0.02, -0.01), -0.10, 0.25,
               0.30, 1.3, 0.45, 0.27, 0.08, 0.50, 14, 0.35, 0.12),
        Sector("Utilities", 0.52, 0.26, 0.03, 0.020, (0.07, -0.06, 0.05, -0.06), -0.03, 0.05,
               0.15, 3.4, 0.30, 0.45, 0.03, 0.75, 17, 0.7, 0.06),
    )
}


@dataclass(frozen=True)
class Company:
    code: str
    name: str
    sector: str
    # Special cases; the defaults describe an ordinary listed company.
    first_period: str = PERIODS[0]  # late IPO: nothing is published before this quarter
    biotech_launch: str | None = None  # pre-revenue biotech: first quarter with sales
    size: float | None = None  # override of the starting annual revenue (USD m)
    price: float | None = None  # override of the starting share price (USD)
    growth: float | None = None  # override of the mean annual growth
    opex_extra: float = 0.0  # extra opex / revenue at the start, halving every 12 quarters
    equity: float | None = None  # override of the starting equity / assets
    payout: float | None = None  # override of the payout ratio
    payout_after: tuple[str, float] | None = None  # (from quarter, new payout ratio)
    debt_funded_payouts: bool = False  # payouts above earnings are borrowed
    # quarter -> pre-tax charge as a multiple of the previous quarter's equity
    write_downs: dict[str, float] = field(default_factory=dict)
    # quarter -> new shares sold, as a multiple of the previous quarter's total assets
    equity_raises: dict[str, float] = field(default_factory=dict)
    # quarter -> borrowed money paid out as buybacks (leveraged recap), x total assets
    recaps: dict[str, float] = field(default_factory=dict)


COMPANIES = (
    # Technology
    Company("BLRX", "Bluriax Systems", "Technology"),
    Company("QTRL", "Qantrel Microdevices", "Technology"),
    Company("NVLT", "Novalith Software", "Technology"),
    Company("CRSW", "Cirroswift Networks", "Technology"),
    Company("PXLD", "Pixelforde Inc", "Technology", size=500.0, price=8.0,
            growth=0.26, opex_extra=0.4),
    Company("HLXA", "Helixa Data Corp", "Technology", first_period="2018-03-31", size=250.0,
            price=6.0, growth=0.36, opex_extra=0.5),
    Company("ZNTQ", "Zentiq Semiconductor", "Technology"),
    Company("OBRN", "Orbran Cloud Holdings", "Technology"),
    # Healthcare
    Company("KSTB", "Kestrel Biosciences", "Healthcare", biotech_launch="2021-09-30"),
    Company("CRVL", "Curavell Health", "Healthcare"),
    Company("SNPX", "Synapxa Pharmaceuticals", "Healthcare"),
    Company("OTVM", "Orthavia Medical", "Healthcare"),
    Company("BLMD", "Bellmond Diagnostics", "Healthcare"),
    Company("HMLX", "Hemalux Laboratories", "Healthcare"),
    Company("PLVR", "Palvera Care Services", "Healthcare"),
    # Industrials
    Company("ACME", "Acme Fabrication Group", "Industrials"),
    Company("TRVD", "Travend Logistics", "Industrials"),
    Company("GRDL", "Gridline Engineering", "Industrials"),
    Company("FRMX", "Fermax Aerospace", "Industrials"),
    Company("HVYW", "Heavyway Machinery", "Industrials"),
    Company("RLCO", "Railco Transit Works", "Industrials"),
    Company("STMK", "Stamark Tool Company", "Industrials"),
    # Consumer Staples
    Company("GRNH", "Greenhollow Foods", "Consumer Staples"),
    Company("PRML", "Primleaf Beverages", "Consumer Staples"),
    Company("CLVB", "Clovebrook Household Products", "Consumer Staples"),
    Company("MDWG", "Meadowgate Dairy", "Consumer Staples"),
    Company("SPRC", "Sprucecrest Personal Care", "Consumer Staples", equity=0.07, payout=0.95,
            payout_after=("2019-09-30", 0.35), write_downs={"2019-09-30": 3.0}),
    Company("BKRN", "Bakeron Baking Co", "Consumer Staples"),
    # Consumer Discretionary
    Company("LUMR", "Lumera Apparel", "Consumer Discretionary"),
    Company("VYGO", "Voyago Travel Group", "Consumer Discretionary"),
    Company("HRTH", "Hearthly Home Furnishings", "Consumer Discretionary"),
    Company("DRVN", "Drivena Motors", "Consumer Discretionary"),
    Company("FLPK", "Fliprock Restaurants", "Consumer Discretionary", equity=0.2, payout=1.1,
            debt_funded_payouts=True, recaps={"2018-06-30": 0.35}),
    Company("PLYX", "Playxis Entertainment", "Consumer Discretionary"),
    Company("BRWL", "Brightwell Retail", "Consumer Discretionary"),
    # Energy
    Company("PTRV", "Petravon Energy", "Energy"),
    Company("BSNR", "Basinridge Oil & Gas", "Energy"),
    Company("SLRA", "Solara Renewables", "Energy", growth=0.14),
    Company("DRLX", "Drillex Oilfield Services", "Energy", size=2500.0, equity=0.12, payout=0.9,
            write_downs={"2020-06-30": 1.5},
            equity_raises={"2021-03-31": 0.30}),
    Company("GLFS", "Gulfstar Midstream", "Energy"),
    # Materials
    Company("FRLC", "Ferralco Steel", "Materials"),
    Company("CHMQ", "Chemiq Industries", "Materials"),
    Company("TMBR", "Timberwick Packaging", "Materials"),
    Company("CPRV", "Copperveil Mining", "Materials"),
    Company("GLSW", "Glasswood Materials", "Materials"),
    # Utilities
    Company("VLTN", "Voltana Power", "Utilities"),
    Company("AQFL", "Aquaflow Water", "Utilities"),
    Company("NRGD", "Northgrid Electric", "Utilities"),
    Company("HRBG", "Harborgas Utilities", "Utilities"),
    Company("SWND", "Southwind Energy", "Utilities"),
)


# --------------------------------------------------------------------------------------------
# Common factors


@dataclass(frozen=True)
class Macro:
    market: np.ndarray  # quarterly log market return
    market_level: np.ndarray  # mean-reverting market valuation level (log)
    oil: np.ndarray  # log oil-price factor, around 0
    covid: np.ndarray  # 0..1 weight of the 2020 demand shock


MARKET_EVENTS = {  # quarters whose market return is set, not drawn
    "2018-12-31": -0.15,
    "2020-03-31": -0.23,
    "2020-06-30": 0.18,
    "2022-03-31": -0.06,
    "2022-06-30": -0.17,
    "2022-09-30": -0.05,
}
OIL_EVENTS = {  # log oil-price changes set, not drawn
    "2015-09-30": -0.25,
    "2015-12-31": -0.20,
    "2020-03-31": -0.50,
    "2020-06-30": -0.15,
    "2020-09-30": 0.30,
    "2021-06-30": 0.25,
    "2022-03-31": 0.35,
    "2022-06-30": 0.12,
    "2022-12-31": -0.25,
}


def make_macro(rng: np.random.Generator) -> Macro:
    market = rng.normal(0.02, 0.06, N_SIM)
    oil_steps = rng.normal(0.0, 0.09, N_SIM)
    for period, r in MARKET_EVENTS.items():
        market[k_of(period)] = r
    for period, r in OIL_EVENTS.items():
        oil_steps[k_of(period)] = r
    level = np.zeros(N_SIM)
    oil = np.zeros(N_SIM)
    for k in range(N_SIM):
        prev_level = level[k - 1] if k else 0.0
        prev_oil = oil[k - 1] if k else 0.3
        level[k] = 0.85 * prev_level + (market[k] - 0.02)
        oil[k] = 0.93 * prev_oil + oil_steps[k]
    covid = np.zeros(N_SIM)
    covid[k_of("2020-03-31")] = 0.4
    covid[k_of("2020-06-30")] = 1.0
    return Macro(market, level, oil, covid)


# --------------------------------------------------------------------------------------------
# Simulation


def _ttm(values: list[float]) -> float:
    """Trailing four quarters, annualised from fewer at the very start."""
    last = values[-4:]
    return sum(last) * 4.0 / len(last)


def simulate_company(rng: np.random.Generator, co: Company, macro: Macro) -> dict[str, np.ndarray]:
    sec = SECTORS[co.sector]
    annual_rev0 = float(np.clip(rng.lognormal(math.log(3000.0), 0.95), 150.0, 60000.0))
    if co.size is not None:
        annual_rev0 = co.size
    rev0 = annual_rev0 / 4.0
    # annual growth: a long-run rate, and for young companies a higher start that halves
    # its excess every four years
    g_long = sec.growth + rng.normal(0.0, 0.035)
    g_start = g_long if co.growth is None else co.growth + g_long - sec.growth
    season = np.array(sec.season) - np.mean(sec.season)
    season *= rng.uniform(0.6, 1.4)
    noise = sec.noise * rng.uniform(0.7, 1.3)
    cogs_share = float(np.clip(sec.cogs + rng.normal(0.0, 0.035), 0.08, 0.92))
    opex_share = float(np.clip(sec.opex + rng.normal(0.0, 0.03), 0.04, 0.95 - cogs_share))
    fixed_opex = rng.uniform(0.3, 0.6)
    tax_rate = rng.uniform(0.18, 0.26)
    rate = rng.uniform(0.035, 0.06)
    assets0 = sec.assets * rng.uniform(0.75, 1.3) * annual_rev0
    eq_ratio = co.equity if co.equity is not None else sec.equity * rng.uniform(0.8, 1.2)
    debt_ratio = sec.debt * rng.uniform(0.6, 1.4)
    equity = eq_ratio * assets0
    debt = debt_ratio * assets0
    other_liab_ratio = (assets0 - equity - debt) / annual_rev0
    other_liab_floor = 0.03 * assets0
    debt_target = debt / annual_rev0
    cash_frac0 = sec.cash * rng.uniform(0.6, 1.5)
    z0 = math.log(cash_frac0 / (1.0 - cash_frac0))
    z = z0
    payout = co.payout if co.payout is not None else sec.payout * rng.uniform(0.6, 1.3)
    buyback_share = rng.uniform(0.2, 0.6)
    pe = sec.pe * rng.uniform(0.75, 1.3)
    ps = sec.ps * rng.uniform(0.7, 1.3)
    beta = rng.uniform(0.7, 1.4)
    vol = sec.vol * rng.uniform(0.8, 1.2)
    price0 = rng.uniform(12.0, 160.0)
    if co.price is not None:
        price0 = co.price
    write_downs = {k_of(p): x for p, x in co.write_downs.items()}
    raises = {k_of(p): x for p, x in co.equity_raises.items()}
    recaps = {k_of(p): x for p, x in co.recaps.items()}
    payout_switch, payout_late = N_SIM, payout
    if co.payout_after:
        payout_switch, payout_late = k_of(co.payout_after[0]), co.payout_after[1]

    out = {item: np.zeros(N_SIM) for item in ITEMS}
    revs: list[float] = []
    nis: list[float] = []
    level = math.log(rev0)
    g = g_start
    trans = 0.0
    smooth = rev0
    assets = assets0
    cash = cash_frac0 * assets0
    shares = 0.0
    log_price = math.log(price0)
    for k in range(N_SIM):
        # revenue: trend + seasonality + macro + noise
        g_mean = g_long + (g_start - g_long) * 0.5 ** (k / 16.0)
        g += 0.3 * (g_mean - g) + rng.normal(0.0, 0.012)
        level += g / 4.0 + rng.normal(0.0, 0.4 * noise)
        trans = 0.5 * trans + macro.covid[k] * sec.covid
        rev = math.exp(
            level + season[k % 4] + trans + sec.oil_beta * macro.oil[k] + rng.normal(0.0, noise)
        )
        smooth = 0.75 * smooth + 0.25 * rev
        # costs, with a part that follows smoothed revenue (operating leverage)
        fc = sec.fixed_cogs
        cogs = cogs_share * (fc * smooth + (1 - fc) * rev) * math.exp(rng.normal(0.0, 0.015))
        ox_share = opex_share + co.opex_extra * 0.5 ** (k / 12.0)
        opex = ox_share * (fixed_opex * smooth + (1 - fixed_opex) * rev)
        opex *= math.exp(rng.normal(0.0, 0.025))
        # one-off charges: the scripted ones and a small random chance
        u, size = rng.random(), rng.uniform(0.1, 0.6)
        special = (size * rev if u < 0.025 else 0.0) + write_downs.get(k, 0.0) * max(equity, 0.0)
        pretax = rev - cogs - opex - special - debt * rate / 4.0 + cash * 0.01 / 4.0
        ni = pretax * (1.0 - tax_rate) if pretax > 0 else pretax * 0.9
        revs.append(rev)
        nis.append(ni)
        # balance sheet roll-forward
        ratio = payout if k < payout_switch else payout_late
        paid = ratio * max(ni, 0.0)
        recap = recaps.get(k, 0.0) * assets
        buyback = paid * buyback_share + recap
        issue = raises.get(k, 0.0) * assets
        equity += ni - paid - recap + issue + 0.01 * rev  # the last term: stock-based pay
        if co.debt_funded_payouts:
            debt += 0.9 * max(paid - ni, 0.0) + recap + debt * rng.normal(0.0, 0.005)
        else:
            debt += 0.1 * (debt_target * 4 * smooth - debt) + debt * rng.normal(0.0, 0.015)
        debt = max(debt, 0.0)
        other = max(other_liab_ratio * 4 * smooth, other_liab_floor)
        other *= math.exp(rng.normal(0.0, 0.02))
        assets = equity + debt + other
        z += 0.15 * (z0 - z) + rng.normal(0.0, 0.15)
        cash = assets / (1.0 + math.exp(-z))
        # price: a random walk pulled towards the value of earnings and sales (with a
        # premium for growing faster than the sector), plus the market
        fair = (pe * max(_ttm(nis), 0.0) + ps * _ttm(revs)) * math.exp(3.0 * (g - sec.growth))
        if k == 0:
            shares = fair / price0
        else:
            price = math.exp(log_price)
            dilution = shares * rng.normal(0.0015, 0.001)
            shares += dilution - buyback / price + issue / (0.92 * price)
        target = math.log(fair / shares) + beta * macro.market_level[k]
        if k:
            log_price += (
                0.3 * (target - log_price)
                + 0.6 * beta * (macro.market[k] - 0.02)
                + rng.normal(0.005, vol)
            )
        for item, value in (
            ("revenue", rev), ("cogs", cogs), ("opex", opex), ("net_income", ni),
            ("total_assets", assets), ("equity", equity), ("debt", debt), ("cash", cash),
            ("shares_outstanding", shares), ("close", math.exp(log_price)),
        ):
            out[item][k] = value
    return out


def simulate_biotech(rng: np.random.Generator, co: Company, macro: Macro) -> dict[str, np.ndarray]:
    """A clinical-stage company: no sales until launch, heavy R&D, funded by share issues."""
    assert co.biotech_launch is not None
    launch = k_of(co.biotech_launch)
    peak = rng.uniform(350.0, 500.0)  # quarterly revenue it ramps towards
    debt = 250.0  # convertible notes
    equity = 900.0
    cash = 0.0
    shares = 60.0
    price = 25.0  # for the first quarter's (non-)issue
    log_pipeline = math.log(rng.uniform(700.0, 1300.0))  # value of the drug candidates
    # a failed trial, then approval and launch
    jumps = {k_of("2018-06-30"): -0.5, launch - 2: 0.7, launch - 1: 0.2}
    out = {item: np.zeros(N_SIM) for item in ITEMS}
    revs: list[float] = []
    rev_smooth = 0.0
    for k in range(N_SIM):
        if k < launch:
            rev = 0.0
        else:
            ramp = 1.0 - math.exp(-(k - launch + 1) / 5.0)
            rev = peak * ramp * math.exp(rng.normal(0.0, 0.05))
        revs.append(rev)
        rev_smooth = 0.75 * rev_smooth + 0.25 * rev
        cogs = 0.11 * rev
        launch_costs = 110.0 if k >= launch - 2 else 0.0
        opex = (55.0 * math.exp(0.035 * k) + launch_costs) * math.exp(rng.normal(0.0, 0.04))
        ni = rev - cogs - opex - debt * 0.02 / 4.0 + cash * 0.02 / 4.0
        burn = max(-ni, 0.0)
        issue = 0.0
        if k and cash < 5.0 * burn:  # raise before the runway gets short
            issue = rng.uniform(500.0, 800.0)
            shares += issue / (0.9 * price)
        shares *= 1.0 + rng.normal(0.004, 0.001)  # stock-based pay
        equity += ni + issue + 0.05 * opex
        other = 40.0 + 0.3 * opex
        assets = equity + debt + other
        non_cash = 60.0 + 1.5 * rev_smooth
        cash = assets - non_cash
        # price: pulled towards cash + pipeline + sales value, plus the market and news
        log_pipeline += rng.normal(0.02, 0.15) + jumps.get(k, 0.0)
        target = math.log((cash + math.exp(log_pipeline) + 4.0 * _ttm(revs)) / shares)
        if k == 0:
            log_price = target
        else:
            log_price += (
                0.35 * (target - log_price)
                + 0.6 * (macro.market[k] - 0.02)
                + rng.normal(0.0, 0.12)
            )
        price = math.exp(log_price)
        for item, value in (
            ("revenue", rev), ("cogs", cogs), ("opex", opex), ("net_income", ni),
            ("total_assets", assets), ("equity", equity), ("debt", debt), ("cash", cash),
            ("shares_outstanding", shares), ("close", price),
        ):
            out[item][k] = value
    return out


def check_company(code: str, data: dict[str, np.ndarray]) -> None:
    """Fail loudly if the simulation produced something no balance sheet could show."""
    for item, values in data.items():
        assert np.all(np.isfinite(values)), (code, item)
    for item in ("revenue", "cogs", "opex", "debt"):
        assert np.all(data[item] >= 0), (code, item)
    for item in ("total_assets", "cash", "shares_outstanding", "close"):
        assert np.all(data[item] > 0), (code, item)
    assert np.all(data["cash"] < data["total_assets"]), code
    assert np.all(data["equity"] < data["total_assets"]), code


# --------------------------------------------------------------------------------------------
# Formulas

FORMULAS: tuple[tuple[str, str, str], ...] = (
    # profitability
    ("gross_profit", "revenue - cogs", "Gross profit for the quarter (USD m)"),
    ("operating_income", "gross_profit - opex", "Operating income: gross profit less opex"),
    ("gross_margin", "gross_profit / revenue", "Quarterly gross margin; missing without revenue"),
    ("gross_margin_or_zero", "div(gross_profit, revenue, 0)",
     "Quarterly gross margin, 0 where it is undefined (pre-revenue)"),
    ("operating_margin", "operating_income / revenue", "Quarterly operating margin"),
    ("net_margin", "net_income / revenue", "Quarterly net margin"),
    ("opex_ratio", "opex / revenue", "Operating expenses as a share of revenue"),
    # trailing twelve months
    ("revenue_ttm", "ttm(revenue)", "Revenue over the last four quarters (USD m)"),
    ("gross_profit_ttm", "ttm(gross_profit)", "Gross profit over the last four quarters"),
    ("operating_income_ttm", "ttm(operating_income)",
     "Operating income over the last four quarters"),
    ("net_income_ttm", "ttm(net_income)", "Net income over the last four quarters"),
    ("net_income_2y", "ts_sum(net_income, 8)", "Net income over the last eight quarters"),
    ("gross_margin_ttm", "gross_profit_ttm / revenue_ttm", "TTM gross margin"),
    ("operating_margin_ttm", "operating_income_ttm / revenue_ttm", "TTM operating margin"),
    ("net_margin_ttm", "net_income_ttm / revenue_ttm", "TTM net margin"),
    # growth
    ("revenue_yoy", "growth(revenue, 4)", "Revenue growth vs the same quarter a year earlier"),
    ("revenue_ttm_yoy", "growth(revenue_ttm, 4)", "Year-on-year growth of TTM revenue"),
    ("revenue_growth_smooth", "ema(revenue_yoy, 4)", "EMA-smoothed year-on-year revenue growth"),
    ("revenue_cagr_3y", "exp(log(revenue_ttm / lag(revenue_ttm, 12)) / 3) - 1",
     "Three-year compound annual growth of TTM revenue"),
    ("net_income_ttm_chg", "diff(net_income_ttm, 4)",
     "Change in TTM net income over a year (USD m)"),
    ("margin_trend", "diff(operating_margin_ttm, 4)",
     "Change in TTM operating margin over a year"),
    # returns on average balances
    ("roe", "net_income_ttm / avg_balance(equity, 4)",
     "Return on equity: TTM net income / average equity over a year"),
    ("roa", "net_income_ttm / avg_balance(total_assets, 4)",
     "Return on assets: TTM net income / average total assets"),
    ("asset_turnover", "revenue_ttm / avg_balance(total_assets, 4)",
     "TTM revenue / average total assets"),
    ("invested_capital", "equity + debt - cash", "Equity plus net debt (USD m)"),
    ("roic", "operating_income_ttm * (1 - 0.21) / avg_balance(invested_capital, 4)",
     "After-tax TTM operating income / average invested capital"),
    ("roe_quality", "if_(avg_balance(equity, 4) > 0, clip(roe, -1, 1), roa)",
     "ROE bounded to +/-100%; ROA where average equity is not positive"),
    ("roe_smooth", "ema(roe_quality, 4)", "EMA-smoothed bounded ROE"),
    # leverage and liquidity
    ("net_debt", "debt - cash", "Debt less cash (USD m)"),
    ("debt_to_equity", "debt / equity", "Debt / equity; negative when equity is negative"),
    ("debt_to_assets", "debt / total_assets", "Debt / total assets"),
    ("equity_ratio", "equity / total_assets", "Equity / total assets"),
    ("cash_to_assets", "cash / total_assets", "Cash / total assets"),
    ("negative_equity", "equity < 0", "1 where book equity is negative"),
    ("net_leverage",
     "clip(if_(operating_income_ttm > 0, net_debt / operating_income_ttm, 10), -5, 10)",
     "Net debt / TTM operating income, in [-5, 10]; 10 when operating income <= 0"),
    ("cash_burn", "if_(net_income_ttm < 0, -net_income_ttm / 4, 0)",
     "Average quarterly loss over the last year, 0 if profitable (USD m)"),
    ("cash_runway", "clip(div(cash, cash_burn, 40), 0, 40)",
     "Quarters of cash at the current burn rate, capped at 40"),
    # per share and valuation
    ("eps", "net_income_ttm / shares_outstanding", "TTM earnings per share (USD)"),
    ("eps_quarter", "net_income / shares_outstanding", "Quarterly earnings per share (USD)"),
    ("eps_change_sign", "sign(diff(eps_quarter, 4))",
     "Direction of quarterly EPS vs the same quarter a year earlier"),
    ("book_value_per_share", "coalesce(equity, lag(equity, 1)) / ffill(shares_outstanding, 2)",
     "Equity per share, bridging single missing quarters"),
    ("market_cap", "close * shares_outstanding", "Market capitalisation (USD m)"),
    ("pe", "close / eps", "Price / TTM earnings per share"),
    ("earnings_yield", "eps / close", "TTM EPS / price; the well-behaved inverse of P/E"),
    ("price_to_book", "market_cap / equity", "Market capitalisation / book equity"),
    ("enterprise_value", "market_cap + net_debt", "Market cap plus net debt (USD m)"),
    ("ev_to_sales", "enterprise_value / revenue_ttm", "Enterprise value / TTM revenue"),
    ("dilution_yoy", "growth(shares_outstanding, 4)", "Growth in shares outstanding over a year"),
    # price behaviour
    ("ret_q", "growth(close, 1)", "Quarterly price return"),
    ("ret_1y", "growth(close, 4)", "One-year price return"),
    ("momentum", "growth(lag(close, 1), 3)", "Price return over the 3 quarters to last quarter"),
    ("volatility", "ts_std(ret_q, 8) * 2", "Annualised volatility of quarterly returns, 2 years"),
    ("downside_vol", "sqrt(ts_mean(min(ret_q, 0) ** 2, 8)) * 2",
     "Annualised downside deviation of quarterly returns, 2 years"),
    ("drawdown", "close / ts_max(close, 8) - 1", "Price vs its two-year high"),
    ("above_low", "close / ts_min(close, 8) - 1", "Price vs its two-year low"),
    ("ema_fast", "ema(close, 4)", "4-quarter EMA of the price"),
    ("ema_slow", "ema(close, 12)", "12-quarter EMA of the price"),
    ("macd", "ema_fast - ema_slow", "MACD-style trend: fast EMA less slow EMA"),
    ("macd_signal", "ema(macd, 3)", "3-quarter EMA of the MACD line"),
    ("macd_hist", "macd - macd_signal", "MACD histogram"),
    ("price_gain", "max(diff(close, 1), 0)", "Quarterly price rise, 0 on a fall"),
    ("price_loss", "max(-diff(close, 1), 0)", "Quarterly price fall, 0 on a rise"),
    ("avg_gain", "wilder(price_gain, 6)", "Wilder average of price rises"),
    ("avg_loss", "wilder(price_loss, 6)", "Wilder average of price falls"),
    ("rsi", "100 * avg_gain / (avg_gain + avg_loss)", "RSI-like oscillator, 0 to 100"),
    ("price_eps_corr", "ts_corr(close, eps, 8)", "Correlation of price and TTM EPS over 2 years"),
    # stability and data quality
    ("margin_stability", "ts_std(gross_margin, 8)", "Std dev of gross margin over 2 years"),
    ("earnings_volatility", "ts_std(net_income, 8) / ts_mean(revenue, 8)",
     "Std dev of net income relative to mean revenue over 2 years"),
    ("earnings_shock", "abs(net_income - lag(net_income, 4)) / revenue_ttm",
     "Size of the year-on-year change in quarterly net income, per unit of TTM revenue"),
    ("missing_count", "isnull(revenue) + isnull(net_income) + isnull(close)",
     "How many of revenue, net income and close are missing"),
    ("turnaround", "(net_income_ttm > 0) and not (lag(net_income_ttm, 4) > 0)",
     "1 where TTM net income turned positive within the last year"),
    ("fscore",
     ("(net_income_ttm > 0) + (roa > lag(roa, 4)) + (debt_to_assets < lag(debt_to_assets, 4))"
      " + (gross_margin_ttm > lag(gross_margin_ttm, 4)) + (dilution_yoy <= 0)"),
     "Piotroski-style 0-5 score of year-on-year improvements"),
    # cross-sectional
    ("rank_value", "cs_rank(earnings_yield)", "Percentile of earnings yield within the quarter"),
    ("rank_quality", "cs_rank(roe_smooth)", "Percentile of smoothed ROE within the quarter"),
    ("rank_growth", "cs_rank(revenue_growth_smooth)", "Percentile of smoothed revenue growth"),
    ("rank_momentum", "cs_rank(momentum)", "Percentile of price momentum"),
    ("rank_low_vol", "cs_rank(-volatility)", "Percentile of low volatility"),
    ("z_margin", "cs_zscore(operating_margin_ttm)", "Cross-sectional z-score of TTM op. margin"),
    ("z_leverage", "cs_zscore(net_leverage)", "Cross-sectional z-score of net leverage"),
    ("size_demeaned", "cs_demean(log(market_cap))", "Log market cap less the quarter's mean"),
    ("composite_score",
     ("(coalesce(rank_value, 0.5) + coalesce(rank_quality, 0.5) + coalesce(rank_growth, 0.5)"
      " + coalesce(rank_momentum, 0.5) + coalesce(rank_low_vol, 0.5)) / 5"),
     "Mean of the five factor ranks, 0.5 for a missing rank"),
    ("composite_rank", "cs_rank(composite_score)", "Percentile of the composite score"),
    ("composite_smooth", "ema(composite_rank, 3)", "EMA-smoothed composite percentile"),
    ("score_pct", "round(100 * composite_rank, 1)", "Composite percentile, 0-100, 1 decimal"),
    # signals
    ("quality_flag", "(roe_quality > 0.12) and (net_leverage < 3)",
     "1 for profitable, moderately levered companies"),
    ("distress_flag", "negative_equity or (cash_runway < 4) or (z_leverage > 2)",
     "1 for negative equity, short cash runway or extreme leverage"),
    ("buy_signal", "(composite_smooth >= 0.8) and (rsi < 70) and not distress_flag",
     "Top-quintile smoothed composite, not overbought, not distressed"),
)


# --------------------------------------------------------------------------------------------
# Output


def fmt(value: float) -> str:
    text = f"{value:.4f}"
    return "0.0000" if text == "-0.0000" else text


def write_csv(path: Path, header: tuple[str, ...], rows) -> int:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        n = 0
        for row in rows:
            writer.writerow(row)
            n += 1
    return n


def build(out_dir: Path) -> dict[str, int]:
    rng = np.random.default_rng(SEED)
    macro = make_macro(rng)
    sims: dict[str, dict[str, np.ndarray]] = {}
    for co in COMPANIES:
        simulate = simulate_biotech if co.biotech_launch else simulate_company
        sims[co.code] = simulate(rng, co, macro)
        check_company(co.code, sims[co.code])

    first = {co.code: PERIODS.index(co.first_period) for co in COMPANIES}
    codes = sorted(sims)
    # whole quarters missing (a late filing), for ordinary companies only
    ordinary = [co.code for co in COMPANIES if not co.biotech_launch and not first[co.code]]
    late = set()
    while len(late) < LATE_FILINGS:
        late.add((ordinary[rng.integers(len(ordinary))], PERIODS[rng.integers(4, N_QUARTERS)]))

    rows = []
    for item in sorted(ITEMS):
        for code in codes:
            values = sims[code][item][BURN_IN:]
            for i in range(first[code], N_QUARTERS):
                if (code, PERIODS[i]) not in late:
                    rows.append((item, code, PERIODS[i], fmt(values[i])))
    keep = rng.random(len(rows)) >= MISSING_RATE
    rows = [row for row, ok in zip(rows, keep, strict=True) if ok]

    restated = restatements(rows)
    prices, reports = point_in_time(rows)

    out_dir.mkdir(parents=True, exist_ok=True)
    by_code = {co.code: co for co in COMPANIES}
    counts = {
        "entities.csv": write_csv(
            out_dir / "entities.csv",
            ("code", "name", "sector"),
            ((c, by_code[c].name, by_code[c].sector) for c in codes),
        ),
        "data.csv": write_csv(out_dir / "data.csv", ("item", "entity", "period", "value"), rows),
        "formulas.csv": write_csv(
            out_dir / "formulas.csv", ("name", "expression", "description"), FORMULAS
        ),
        "restatements.csv": write_csv(
            out_dir / "restatements.csv", ("item", "entity", "period", "value", "known_at"),
            restated,
        ),
        "prices.csv": write_csv(out_dir / "prices.csv", ("item", "entity", "period", "value"),
                                prices),
        "eps_reports.csv": write_csv(
            out_dir / "eps_reports.csv", ("item", "entity", "period", "value", "known_at"),
            reports,
        ),
        "daily_formulas.csv": write_csv(
            out_dir / "daily_formulas.csv", ("name", "expression", "description"),
            DAILY_FORMULAS,
        ),
        "ohlcv.csv": write_csv(out_dir / "ohlcv.csv", ("item", "entity", "period", "value"),
                               ohlcv()),
        "ohlcv_entities.csv": write_csv(out_dir / "ohlcv_entities.csv",
                                        ("code", "name", "sector", "industry",
                                         "subindustry"),
                                        OHLCV_ENTITIES),
    }
    (out_dir / "catalogs").mkdir(exist_ok=True)
    counts["catalogs/alpha158.yaml"] = write_catalog(out_dir / "catalogs" / "alpha158.yaml",
                                                     ALPHA158_HEADER, alpha158())
    counts["catalogs/alpha101.yaml"] = write_catalog(out_dir / "catalogs" / "alpha101.yaml",
                                                     a101.ALPHA101_HEADER, a101.alpha101())
    counts["catalogs/alpha101_industry.yaml"] = write_catalog(
        out_dir / "catalogs" / "alpha101_industry.yaml", a101.ALPHA101_INDUSTRY_HEADER,
        a101.alpha101_industry())
    return counts


DAILY_FROM = "2024-01-01"  # daily prices for the last two years
DAILY_HOLIDAYS = ("2024-01-01", "2024-07-04", "2024-12-25", "2025-01-01", "2025-07-04",
                  "2025-12-25")  # weekdays without trading: on the calendar, no price
DAILY_FORMULAS = [
    ("eps_q", "eps_reported", "Reported quarterly EPS (the latest version of each quarter)"),
    ("eps_ttm_reported", "ttm(eps_reported)",
     "Trailing four quarters of reported EPS, with its versions as reports came in"),
    ("pe_daily", "px / asof(eps_ttm_reported)",
     "Daily P/E on the trailing EPS known that day (never a report before its date)"),
    ("earnings_yield_daily", "asof(eps_ttm_reported) / px", "Daily earnings yield, as known"),
    ("momentum_60", "px / lag(px, 60) - 1", "Price change over 60 trading days"),
    ("volatility_20", "ts_std(px / lag(px, 1) - 1, 20)",
     "Standard deviation of daily returns over 20 trading days"),
    ("pe_inline", "px / asof(ttm(eps_reported))",
     "The same daily P/E written inline: asof of an expression computes it with its versions"),
    ("quarter_close", "quarterly_last(px)", "The last close of each complete quarter"),
    ("quarter_range", "quarterly_max(px) / quarterly_min(px) - 1",
     "High over low of each quarter's closes"),
]


def point_in_time(rows) -> tuple[list[tuple], list[tuple]]:
    """Daily closes (business days from DAILY_FROM, a few holidays without data) that
    pass through each quarter's close, and quarterly EPS as reported: each company's filing
    20 to 60 days after the quarter, and about one in twenty restated 60 to 200 days after
    that. Their own generator, so that data.csv stays what it was."""
    rng = np.random.default_rng(SEED + 2)
    table = {(r[0], r[1], r[2]): float(r[3]) for r in rows}
    codes = sorted({r[1] for r in rows})
    days = pd.bdate_range(DAILY_FROM, LAST_PERIOD)
    days = days[~days.isin(pd.to_datetime(DAILY_HOLIDAYS))]
    quarters = [p for p in PERIODS if p >= "2023-12-31"]
    prices = []
    for code in codes:
        anchors = [(pd.Timestamp(q), table.get(("close", code, q))) for q in quarters]
        anchors = [(d, v) for d, v in anchors if v]
        if len(anchors) < 2:
            continue
        t = np.array([(d - anchors[0][0]).days for d, _ in anchors], dtype=float)
        logv = np.log([v for _, v in anchors])
        x = np.array([(d - anchors[0][0]).days for d in days], dtype=float)
        noise = np.cumsum(rng.normal(0, 0.012, len(days)))
        # a random walk pinned to the quarter closes (a Brownian bridge between them): the
        # walk less its own straight line between the quarter ends, on the closes' line
        pinned = np.interp(x, t, logv) + noise - np.interp(x, t, np.interp(t, x, noise))
        for d, v in zip(days, np.exp(pinned)):
            prices.append(("px", code, d.strftime("%Y-%m-%d"), fmt(float(v))))
    reports = []
    for code in codes:
        for q in PERIODS:
            ni, sh = table.get(("net_income", code, q)), table.get(("shares_outstanding", code, q))
            if ni is None or not sh:
                continue
            filed = np.datetime64(q) + int(rng.integers(20, 61))
            eps = ni / sh
            reports.append(("eps_reported", code, q, fmt(eps), str(filed)))
            if rng.random() < 0.05:
                again = filed + int(rng.integers(60, 201))
                reports.append(("eps_reported", code, q, fmt(eps * rng.uniform(0.9, 1.05)),
                                str(again)))
    return prices, reports


OHLCV_DAYS = 300  # business days up to LAST_PERIOD, no holidays
OHLCV_CODES = ("ARVN", "BXTL", "CDMR", "DLQS", "EVRA", "FNXO", "GTHM", "HZLP", "IOTK", "JRVB",
               "KLMN", "LXOR", "MVTQ", "NRBL", "OPTX", "PQRD", "QZEN", "RWLT", "SKVY", "TMBL")
OHLCV_ITEMS = ("close", "high", "low", "open", "volume", "vwap")
# The OHLCV stocks' entities (ohlcv_entities.csv): 2 sectors of 10 stocks, 4 industries of
# 5 and 8 subindustries of 2 or 3 (each inside one industry), for cross-sectional formulas
# within groups (cs_demean(x, by=industry); catalogs/alpha101_industry.yaml).
OHLCV_ENTITIES = (
    ("ARVN", "Arvena Systems", "Technology", "Software", "Application Software"),
    ("BXTL", "Boxtel Semiconductor", "Technology", "Semiconductors", "Chip Design"),
    ("CDMR", "Cadmore Cloud", "Technology", "Software", "Cloud Platforms"),
    ("DLQS", "Delquist Devices", "Technology", "Semiconductors", "Chip Design"),
    ("EVRA", "Evora Software", "Technology", "Software", "Application Software"),
    ("FNXO", "Fenixo Fabs", "Technology", "Semiconductors", "Chip Equipment"),
    ("GTHM", "Gotham Cloudworks", "Technology", "Software", "Cloud Platforms"),
    ("HZLP", "Hazelpoint Silicon", "Technology", "Semiconductors", "Chip Design"),
    ("IOTK", "Iotek Instruments", "Technology", "Semiconductors", "Chip Equipment"),
    ("JRVB", "Jarvis Apps", "Technology", "Software", "Application Software"),
    ("KLMN", "Kalmin Rail", "Industrials", "Transport", "Rail"),
    ("LXOR", "Luxor Machinery", "Industrials", "Machinery", "Heavy Equipment"),
    ("MVTQ", "Mavtique Freight", "Industrials", "Transport", "Trucking"),
    ("NRBL", "Norbell Tools", "Industrials", "Machinery", "Tools"),
    ("OPTX", "Optix Logistics", "Industrials", "Transport", "Trucking"),
    ("PQRD", "Pequod Cranes", "Industrials", "Machinery", "Heavy Equipment"),
    ("QZEN", "Quartzen Railcar", "Industrials", "Transport", "Rail"),
    ("RWLT", "Redwell Hand Tools", "Industrials", "Machinery", "Tools"),
    ("SKVY", "Skyvane Haulage", "Industrials", "Transport", "Trucking"),
    ("TMBL", "Timberline Excavators", "Industrials", "Machinery", "Heavy Equipment"),
)


def ohlcv() -> list[tuple]:
    """Daily bars of 20 made-up stocks over OHLCV_DAYS business days: a log random walk of
    closes, each open a gap from the day before's close, high and low beyond both, vwap
    inside [low, high] and whole-share volumes that rise on big moves. Rounded first, then
    made consistent: low <= open, close, vwap <= high. Their own generator."""
    rng = np.random.default_rng(SEED + 3)
    days = [d.strftime("%Y-%m-%d") for d in pd.bdate_range(end=LAST_PERIOD,
                                                           periods=OHLCV_DAYS)]
    bars: dict[str, list[tuple[str, str, str]]] = {item: [] for item in OHLCV_ITEMS}
    for code in OHLCV_CODES:
        vol = rng.uniform(0.01, 0.03)
        ret = rng.normal(rng.uniform(-0.0005, 0.001), vol, OHLCV_DAYS)
        close = rng.uniform(8.0, 150.0) * np.exp(np.cumsum(ret))
        prev = np.concatenate([[close[0] * np.exp(-ret[0])], close[:-1]])
        opens = prev * np.exp(rng.normal(0, vol / 3, OHLCV_DAYS))
        up = np.abs(rng.normal(0, vol / 2, OHLCV_DAYS))
        down = np.abs(rng.normal(0, vol / 2, OHLCV_DAYS))
        base = rng.uniform(2e5, 5e6)
        volume = np.round(base * np.exp(rng.normal(0, 0.35, OHLCV_DAYS) + 8 * np.abs(ret)))
        share = rng.uniform(0.2, 0.8, OHLCV_DAYS)
        for i, day in enumerate(days):
            o, c = round(float(opens[i]), 4), round(float(close[i]), 4)
            h = max(round(float(max(o, c) * np.exp(up[i])), 4), o, c)
            lo = min(round(float(min(o, c) * np.exp(-down[i])), 4), o, c)
            w = min(max(round(lo + share[i] * (h - lo), 4), lo), h)
            for item, v in (("close", c), ("high", h), ("low", lo), ("open", o),
                            ("volume", float(volume[i])), ("vwap", w)):
                bars[item].append((item, code, day, fmt(v)))
    return [row for item in OHLCV_ITEMS for row in bars[item]]


ALPHA158_HEADER = """\
# Qlib's Alpha158 features (qlib/contrib/data/handler.py, Alpha158 with its default config:
# kbar, price OPEN/HIGH/LOW/VWAP at window 0, no volume, every rolling operator over windows
# 5, 10, 20, 30, 60; the expressions of qlib/contrib/data/loader.py Alpha158DL), in the
# formula language, over the daily items open, high, low, close, volume, vwap.
# Written by scripts/make_sample_data.py. How each Qlib operator maps is in
# sample_data/README.md; values agree with Qlib's after the warm-up (the longest window).
"""
ROLLING_WINDOWS = (5, 10, 20, 30, 60)
_DCLOSE = "close - lag(close, 1)"
_DVOL = "volume - lag(volume, 1)"
_ROLLING = (  # name, expression with {d} the window, description
    ("ROC", "lag(close, {d}) / close", "close {d} days ago over today's close"),
    ("MA", "ts_mean(close, {d}) / close", "{d}-day mean close over today's close"),
    ("STD", "ts_std(close, {d}) / close", "{d}-day standard deviation of close over close"),
    ("BETA", "ts_slope(close, {d}) / close", "{d}-day regression slope of close over close"),
    ("RSQR", "ts_rsquare(close, {d})", "R-squared of the {d}-day regression of close"),
    ("RESI", "ts_resi(close, {d}) / close", "today's residual of that regression over close"),
    ("MAX", "ts_max(high, {d}) / close", "{d}-day highest high over close"),
    ("MIN", "ts_min(low, {d}) / close", "{d}-day lowest low over close"),
    ("QTLU", "ts_quantile(close, {d}, 0.8) / close", "{d}-day 80% quantile of close over close"),
    ("QTLD", "ts_quantile(close, {d}, 0.2) / close", "{d}-day 20% quantile of close over close"),
    ("RANK", "ts_rank(close, {d})", "percentile of today's close among the last {d}"),
    ("RSV", "(close - ts_min(low, {d})) / (ts_max(high, {d}) - ts_min(low, {d}) + 1e-12)",
     "close's position between the {d}-day lowest low and highest high"),
    ("IMAX", "ts_argmax(high, {d}) / {d}", "position of the {d}-day highest high, over {d}"),
    ("IMIN", "ts_argmin(low, {d}) / {d}", "position of the {d}-day lowest low, over {d}"),
    ("IMXD", "(ts_argmax(high, {d}) - ts_argmin(low, {d})) / {d}",
     "days from the {d}-day lowest low to the highest high, over {d}"),
    ("CORR", "ts_corr(close, log(volume + 1), {d})", "{d}-day correlation of close and log volume"),
    ("CORD", "ts_corr(close / lag(close, 1), log(volume / lag(volume, 1) + 1), {d})",
     "{d}-day correlation of the close ratio and the log volume ratio"),
    ("CNTP", "ts_mean(close > lag(close, 1), {d})", "share of the last {d} days that closed up"),
    ("CNTN", "ts_mean(close < lag(close, 1), {d})", "share of the last {d} days that closed down"),
    ("CNTD", "ts_mean(close > lag(close, 1), {d}) - ts_mean(close < lag(close, 1), {d})",
     "up-day share less down-day share over {d} days"),
    ("SUMP", f"ts_sum(max({_DCLOSE}, 0), {{d}}) / (ts_sum(abs({_DCLOSE}), {{d}}) + 1e-12)",
     "{d}-day gains over the total absolute change (RSI-like)"),
    ("SUMN", f"ts_sum(max(lag(close, 1) - close, 0), {{d}}) / (ts_sum(abs({_DCLOSE}), {{d}})"
     " + 1e-12)", "{d}-day losses over the total absolute change"),
    ("SUMD", f"(ts_sum(max({_DCLOSE}, 0), {{d}}) - ts_sum(max(lag(close, 1) - close, 0), {{d}}))"
     f" / (ts_sum(abs({_DCLOSE}), {{d}}) + 1e-12)", "{d}-day gains less losses over the total"),
    ("VMA", "ts_mean(volume, {d}) / (volume + 1e-12)", "{d}-day mean volume over today's"),
    ("VSTD", "ts_std(volume, {d}) / (volume + 1e-12)", "{d}-day volume deviation over today's"),
    ("WVMA", "ts_std(abs(close / lag(close, 1) - 1) * volume, {d}) / (ts_mean(abs(close / "
     "lag(close, 1) - 1) * volume, {d}) + 1e-12)", "{d}-day volume-weighted return volatility"),
    ("VSUMP", f"ts_sum(max({_DVOL}, 0), {{d}}) / (ts_sum(abs({_DVOL}), {{d}}) + 1e-12)",
     "{d}-day volume increases over the total absolute change"),
    ("VSUMN", f"ts_sum(max(lag(volume, 1) - volume, 0), {{d}}) / (ts_sum(abs({_DVOL}), {{d}})"
     " + 1e-12)", "{d}-day volume decreases over the total absolute change"),
    ("VSUMD", f"(ts_sum(max({_DVOL}, 0), {{d}}) - ts_sum(max(lag(volume, 1) - volume, 0), {{d}}))"
     f" / (ts_sum(abs({_DVOL}), {{d}}) + 1e-12)", "{d}-day volume increases less decreases"),
)


def alpha158() -> list[tuple[str, str, str]]:
    """(name, expression, description) of the 158 features, in Qlib's order."""
    rng_hl = "(high - low + 1e-12)"
    out = [
        ("KMID", "(close - open) / open", "candle body over open"),
        ("KLEN", "(high - low) / open", "day's range over open"),
        ("KMID2", f"(close - open) / {rng_hl}", "candle body over the day's range"),
        ("KUP", "(high - max(open, close)) / open", "upper shadow over open"),
        ("KUP2", f"(high - max(open, close)) / {rng_hl}", "upper shadow over the range"),
        ("KLOW", "(min(open, close) - low) / open", "lower shadow over open"),
        ("KLOW2", f"(min(open, close) - low) / {rng_hl}", "lower shadow over the range"),
        ("KSFT", "(2 * close - high - low) / open", "close's shift within the range, over open"),
        ("KSFT2", f"(2 * close - high - low) / {rng_hl}", "close's shift over the range"),
    ]
    out += [(f"{p.upper()}0", f"{p} / close", f"today's {p} over close")
            for p in ("open", "high", "low", "vwap")]
    for name, expr, desc in _ROLLING:
        out += [(f"{name}{d}", expr.format(d=d), desc.format(d=d)) for d in ROLLING_WINDOWS]
    assert len(out) == 158 and len({n for n, _, _ in out}) == 158
    return out


def write_catalog(path: Path, header: str, rows) -> int:
    """A formulas YAML document: name: {expression, description}, one entry per formula,
    every string double-quoted (json.dumps is valid YAML)."""
    import json

    lines = [header.rstrip("\n"), "formulas:"]
    for name, expr, desc in rows:
        lines += [f"  {name}:", f"    expression: {json.dumps(expr)}",
                  f"    description: {json.dumps(desc)}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(rows)


RESTATEMENTS = 6  # points of revenue and net income restated, 100 to 200 days after


def restatements(rows) -> list[tuple]:
    """A few restated points: revenue or net income of the last eight quarters, changed by
    -8% to +5% and known 100 to 200 days after the quarter end (an amended filing). Their
    own generator, so that data.csv stays what it was."""
    rng = np.random.default_rng(SEED + 1)
    recent = set(PERIODS[-8:])
    pool = [r for r in rows if r[0] in ("net_income", "revenue") and r[2] in recent]
    picked = sorted(pool[i] for i in rng.choice(len(pool), RESTATEMENTS, replace=False))
    out = []
    for item, code, period, value in picked:
        factor = 1.0 + rng.uniform(-0.08, 0.05)
        known = np.datetime64(period) + int(rng.integers(100, 201))
        out.append((item, code, period, fmt(float(value) * factor), str(known)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    counts = build(args.out)
    for name, n in counts.items():
        print(f"{args.out / name}: {n} rows")


if __name__ == "__main__":
    main()
