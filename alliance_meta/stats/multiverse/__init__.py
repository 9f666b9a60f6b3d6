"""Multiverse and specification-curve analysis: every defensible analytic choice at once.

A pooled alliance-outcome correlation depends on choices: which effects are included, how
dependent effects of one sample are handled, the tau^2 estimator, the test, and the
publication-bias adjustment. :func:`multiverse` crosses the levels of every factor
(``itertools.product``, in that order), keeps the combinations that are specifications (the
grid rule below), fits each with the package's estimators, and returns one tidy row per
specification in ``result.table``; the other combinations are listed with the reason in
``result.excluded``. A specification whose fit fails (no convergence, a method that stops) is
kept, with ``status = "not estimable"`` and the reason.

References
----------
Steegen, S., Tuerlinckx, F., Gelman, A., & Vanpaemel, W. (2016). Increasing transparency through
    a multiverse analysis. Perspectives on Psychological Science, 11(5), 702-712.
    doi:10.1177/1745691616658637
Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020). Specification curve analysis. Nature Human
    Behaviour, 4(11), 1208-1214. doi:10.1038/s41562-020-0912-z
Voracek, M., Kossmeier, M., & Tran, U. S. (2019). Which data to meta-analyze, and how? A
    specification-curve and multiverse-analysis approach to meta-analysis. Zeitschrift fuer
    Psychologie, 227(1), 64-82. doi:10.1027/2151-2604/a000357

The factors
-----------
Model choices:

- ``method``: the tau^2 estimator (DL, HE, HS, SJ, ML, REML, EB, PM, or FE for the common-effect
  model; papers in :mod:`alliance_meta.stats.rma`).
- ``test``: ``"z"`` or ``"knha"``. For random effects, Wald z or Knapp & Hartung (2003, Stat Med
  22:2693-2710, doi:10.1002/sim.1482). For the three-level model, ``"knha"`` means t tests with
  k - 1 df (metafor's ``rma.mv(test="t")``). CR2 robust inference is read with t on
  Satterthwaite df only (clubSandwich's default; ``"knha"``).
- ``dependency``: how several effects of one sample are handled. ``"three-level"``: effects in
  samples (:func:`~alliance_meta.stats.rma_mv.three_level`; REML or ML). ``"aggregate"``: one
  composite per sample with an assumed correlation ``rho`` (Borenstein et al. 2009, ch. 24;
  :func:`~alliance_meta.stats.escalc.aggregate`). ``"robust"``: random effects on all effects
  with CR2 cluster-robust inference by sample (Tipton 2015, Psychol Methods 20:375-393,
  doi:10.1037/met0000011; the kernel of :mod:`alliance_meta.stats.cr2`). ``"first"``: the first
  effect of each sample in file order.
- ``bias``: ``"none"``; ``"trim-and-fill"`` (Duval & Tweedie 2000,
  :func:`~alliance_meta.stats.bias.trim_and_fill`; for ``"aggregate"`` and ``"first"``);
  ``"PET-PEESE"`` (Stanley & Doucouliagos 2014, Res Synth Methods 5:60-78,
  doi:10.1002/jrsm.1095): the random-effects meta-regressions of the effects on their standard
  error (PET) and on their sampling variance (PEESE) with the specification's estimator and
  test, PEESE's intercept when PET's is positive at one-sided alpha = .05, else PET's (as
  :func:`~alliance_meta.stats.bias.pet_peese` with ``model="rma"``); under ``"robust"`` with CR2
  inference; under ``"three-level"`` the three-level regressions with CR2 inference, as
  ``pet_peese`` of a three-level fit (Rodgers & Pustejovsky 2021, Psychol Methods 26:141-160,
  doi:10.1037/met0000300).

Inclusion filters (``"all"`` keeps every row): ``min_n`` (keep effects with n >= the level),
``r_kind``, ``rater`` (column ``alliance_rater``), ``timing`` (``alliance_timing``),
``publication`` (``publication_type``), ``modality``, ``beta`` (``"include"`` or ``"drop"``
the effects converted from a standardised beta, ``stat_type == "beta"``); any other column of
the data can be a filter factor too (rows equal to the level are kept).
:func:`default_factors` offers a filter level only where the data make it a choice.

The grid rule
-------------
A combination of levels is a specification only if its model can exist on its rows
(:func:`~alliance_meta.stats.multiverse.grid.model_reason` and ``data_reason``): the
three-level model by REML or ML only; trim-and-fill only for independent effects; CR2 only with
Satterthwaite t; at least one effect after the filters, two samples for any model, three
effects for the three-level model and for a bias adjustment (three samples for PET-PEESE with
CR2); no three-level model or ``"first"`` where every sample has one effect (the same model
as ``"aggregate"`` on the same effects); and a filter combination that keeps the same rows as
an earlier one (in product order) is that one, not a new specification.

Execution
---------
Specifications sharing the same rows are fitted together: the rows are filtered once, each
dependency handling is prepared once, and the fits of all row sets of a chunk are stacked, one
call per estimator whatever their sizes: the random-effects fits, the PET-PEESE regressions
and each round of trim-and-fill's centres (:mod:`.ragged`: the engine's estimators with segment
sums), and the three-level fits (:mod:`.batch3l`: Newton on the analytic Hessian). The tests
reuse each tau^2, and CR2 runs once per row set for all estimators. Row
sets are cut into chunks of ``chunk_size`` in a fixed order, and the same chunks run locally
(one after the other, or in ``n_jobs`` processes) or on a Dask cluster (``scheduler=``; the
``[dask]`` extra), so the tables are identical wherever they are computed.
"""

from .grid import (
    BIAS_ADJUSTMENTS,
    DEPENDENCIES,
    FILTER_COLUMNS,
    METHODS,
    TESTS,
    default_factors,
)
from .result import MultiverseResult, _sig_class
from .runner import multiverse

__all__ = [
    "MultiverseResult",
    "multiverse",
    "default_factors",
    "METHODS",
    "TESTS",
    "DEPENDENCIES",
    "BIAS_ADJUSTMENTS",
    "FILTER_COLUMNS",
    "_sig_class",
]
