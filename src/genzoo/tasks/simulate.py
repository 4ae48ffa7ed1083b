"""Fit a Gaussian hidden Markov model to a real time series and simulate synthetic ones like it.

    genzoo simulate --series sunspots --states 3
    genzoo simulate --csv prices.csv --columns open,close --states 4 --covariance full

The series (T steps, d columns) is standardized, fitted by Baum-Welch with several random restarts
(the best log-likelihood is kept) [1], and ``samples`` synthetic series of the same length T are drawn
from the fitted model. Written to ``out``: ``simulate.png`` (per column: the marginal histogram and the
autocorrelation function, real vs simulated) and ``simulate.json`` with the numbers: the fitted
model's log-likelihood per time step (a log DENSITY in nats, in the series' own units, beside an
i.i.d. Gaussian baseline), the two-sample Kolmogorov-Smirnov statistic between the real values and
the pooled simulated ones, and the autocorrelations at lags 1..k of the real series and of the
simulated ones (mean and standard deviation over the samples).

Built-in series (from the datasets that ship inside statsmodels, read offline): ``sunspots`` (yearly
sunspot numbers 1700-2008), ``co2`` (Mauna Loa CO2, monthly means 1958-2001), ``elnino`` (monthly
sea surface temperature 1950-2010), ``macro`` (US quarterly growth of real GDP, consumption and
investment, percent, 1959-2009: three columns).

[1] L. R. Rabiner. A tutorial on hidden Markov models and selected applications in speech
    recognition. Proceedings of the IEEE 77(2), 1989.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from genzoo.errors import DataError, UsageError
from genzoo.models.classic.emissions import GaussianEmission
from genzoo.models.classic.hmm import HMM

SERIES = ("sunspots", "co2", "elnino", "macro")


def load_series(name: str) -> tuple[np.ndarray, list[str]]:
    """A series shipped with statsmodels: (values (T, d) float64, column names)."""
    if name not in SERIES:
        raise UsageError(f"unknown series {name!r}; choose one of: {', '.join(SERIES)}")
    try:
        from statsmodels import datasets
    except ImportError:
        raise UsageError(f"--series {name} needs statsmodels (pip install statsmodels), or give --csv") from None
    if name == "sunspots":
        frame = datasets.sunspots.load_pandas().data[["SUNACTIVITY"]]
    elif name == "co2":  # weekly with gaps: monthly means, the few empty months interpolated
        frame = datasets.co2.load_pandas().data.resample("MS").mean().interpolate()
    elif name == "elnino":  # one row per year, one column per month: read in time order
        data = datasets.elnino.load_pandas().data.drop(columns="YEAR")
        return data.to_numpy(np.float64).reshape(-1, 1), ["temperature"]
    else:
        frame = datasets.macrodata.load_pandas().data[["realgdp", "realcons", "realinv"]]
        frame = 100 * np.log(frame).diff().iloc[1:]
    return frame.to_numpy(np.float64), [str(c) for c in frame.columns]


def load_csv(path, columns: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Numeric columns of a CSV file with a header row: (values (T, d) float64, names).

    ``columns`` picks columns by name (default: every column with a number in it, e.g. not a date). Raises
    ValueError with one line naming the file, line and column for anything malformed or missing.
    """
    path = Path(path)
    lines = []  # (line number in the file, fields), blank lines skipped
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                if any(cell.strip() for cell in row):
                    lines.append((reader.line_num, row))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read CSV file {path}: {getattr(err, 'strerror', None) or err}") from None
    if len(lines) < 2:
        raise DataError(f"{path} needs a header row and at least one data row")
    header = [name.strip() for name in lines[0][1]]
    if len(set(header)) != len(header):
        raise DataError(f"{path}: the header repeats a column name: {', '.join(header)}")
    for line, row in lines[1:]:
        if len(row) != len(header):
            raise DataError(f"{path} line {line}: {len(row)} fields, but the header has {len(header)}")
    cells = {name: [(line, row[i].strip()) for line, row in lines[1:]] for i, name in enumerate(header)}
    if columns:
        missing = [c for c in columns if c not in cells]
        if missing:
            raise DataError(f"{path} has no column {missing[0]!r}; its columns are: {', '.join(header)}")
    else:
        columns = [name for name in header if any(_is_number(v) for _, v in cells[name])]  # then all must be
        if not columns:
            raise DataError(f"{path} has no numeric column; its columns are: {', '.join(header)}")
    values = np.empty((len(lines) - 1, len(columns)))
    for j, name in enumerate(columns):
        for i, (line, text) in enumerate(cells[name]):
            if text and not _is_number(text):
                raise DataError(f"{path} line {line}, column {name!r}: {text!r} is not a number")
            values[i, j] = float(text) if text else math.nan
            if not math.isfinite(values[i, j]):
                raise DataError(
                    f"{path} line {line}, column {name!r}: missing or non-finite value ({text!r}); "
                    "drop or fill such rows first"
                )
    return values, list(columns)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def autocorrelation(x: np.ndarray, lags: int) -> np.ndarray:
    """Sample autocorrelation of a 1-d series at lags 1..``lags`` (the biased estimator: one mean,
    one variance, sums divided by T)."""
    x = x - x.mean()
    denom = float(x @ x) or 1.0
    return np.array([float(x[:-k] @ x[k:]) / denom for k in range(1, lags + 1)])


def fit_gaussian_hmm(
    z: np.ndarray, states: int, covariance: str, restarts: int, iterations: int, seed: int
) -> tuple[HMM, float]:
    """The best of ``restarts`` Baum-Welch runs on one standardized series z (T, d): (model, log p(z)).
    Each run stops once it gains less than 1e-4 nats per time step."""
    obs = torch.as_tensor(z, dtype=torch.float64)[None]
    best, best_ll = None, -math.inf
    for restart in range(restarts):
        model = HMM(GaussianEmission(states, z.shape[1], covariance, min_covar=1e-3)).double()
        history = model.fit_em(
            obs, iterations, tol=1e-4 * z.shape[0], generator=torch.Generator().manual_seed(seed + restart)
        )
        if history["log_likelihood"][-1] > best_ll:
            best, best_ll = model, history["log_likelihood"][-1]
    return best, best_ll


def simulate(
    values: np.ndarray,
    columns: list[str],
    out,
    name: str = "series",
    states: int = 3,
    covariance: str = "diag",
    samples: int = 100,
    lags: int = 20,
    restarts: int = 4,
    iterations: int = 200,
    seed: int = 0,
) -> dict:
    """Fit, simulate ``samples`` series of the same length, compare, write PNG + JSON; returns the numbers."""
    from scipy.stats import ks_2samp

    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    t_len, dims = values.shape
    if t_len < max(10, 2 * states):
        raise DataError(f"{name} has {t_len} time steps: too short for {states} states (need {max(10, 2 * states)})")
    mean, scale = values.mean(0), values.std(0)
    if (scale == 0).any():
        raise DataError(f"column {columns[int(np.argmin(scale))]!r} of {name} is constant")
    z = (values - mean) / scale
    lags = min(lags, t_len - 1)
    model, log_lik = fit_gaussian_hmm(z, states, covariance, restarts, iterations, seed)
    _, iid_log_lik = fit_gaussian_hmm(z, 1, covariance, 1, 1, seed)
    jacobian = float(np.log(scale).sum())  # log density of the original units = standardized - sum log scale
    _, draws = model.sample(samples, t_len, torch.Generator().manual_seed(seed))
    simulated = draws.numpy() * scale + mean  # (samples, T, d)
    result = {
        "series": name,
        "columns": columns,
        "length": t_len,
        "states": states,
        "covariance": covariance,
        "samples": samples,
        "seed": seed,
        "log_likelihood_per_step": log_lik / t_len - jacobian,
        "iid_gaussian_log_likelihood_per_step": iid_log_lik / t_len - jacobian,
        "lags": list(range(1, lags + 1)),
        "per_column": {},
    }
    panels = []
    for j, column in enumerate(columns):
        real, fake = values[:, j], simulated[:, :, j]
        acf_fake = np.stack([autocorrelation(s, lags) for s in fake])
        stats = {
            "ks_statistic": float(ks_2samp(real, fake.reshape(-1)).statistic),
            "acf_real": autocorrelation(real, lags).tolist(),
            "acf_simulated_mean": acf_fake.mean(0).tolist(),
            "acf_simulated_sd": acf_fake.std(0).tolist(),
        }
        result["per_column"][column] = stats
        panels += _panels(column, real, fake.reshape(-1), stats, result["lags"])
    out = Path(out)
    from genzoo.tasks.plot import save_panels

    result["png"] = str(save_panels(panels, out / "simulate.png", columns=2))
    result["json"] = str(out / "simulate.json")
    (out / "simulate.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _panels(column, real, fake, stats, lags):
    """Two pictures for one column: marginal densities (histograms) and autocorrelations."""
    from genzoo.tasks.plot import draw_line_plot

    edges = np.histogram_bin_edges(np.concatenate([real, fake]), bins=min(30, max(5, len(real) // 10)))
    centres = (0.5 * (edges[1:] + edges[:-1])).tolist()
    density = [np.histogram(v, edges, density=True)[0].tolist() for v in (real, fake)]
    histogram = draw_line_plot(
        [{"label": "real", "x": centres, "y": density[0]}, {"label": "simulated", "x": centres, "y": density[1]}],
        title=f"{column}: marginal (KS {stats['ks_statistic']:.3f})",
        xlabel=column,
        ylabel="density",
        size=(560, 360),
    )
    acf = draw_line_plot(
        [
            {"label": "real", "x": lags, "y": stats["acf_real"]},
            {
                "label": "simulated (mean ± sd)",
                "x": lags,
                "y": stats["acf_simulated_mean"],
                "err": stats["acf_simulated_sd"],
            },
        ],
        title=f"{column}: autocorrelation",
        xlabel="lag",
        ylabel="ACF",
        size=(560, 360),
    )
    return [histogram, acf]
