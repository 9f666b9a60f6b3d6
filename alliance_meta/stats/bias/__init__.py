"""Small-study effects and publication bias: funnel asymmetry tests, trim-and-fill, PET-PEESE,
step-function selection models and fail-safe N; one module per method family.

- :mod:`.egger`: Egger's regression test (``regtest``)
- :mod:`.ranktest`: Begg & Mazumdar's rank correlation test (``ranktest``)
- :mod:`.trimfill`: trim-and-fill (``trimfill``)
- :mod:`.pet_peese`: PET, PEESE and PET-PEESE
- :mod:`.selmodel`: step-function selection models, 3PSM (``selmodel``)
- :mod:`.fsn`: fail-safe N (``fsn``)

Every function takes a fitted model (or ``yi, vi``) from :mod:`alliance_meta.stats.rma` and
returns a frozen result with metafor's names (Viechtbauer 2010, J Stat Softw 36(3),
doi:10.18637/jss.v036.i03): ``zval``, ``pval``, ``ci_lb``, ``ci_ub``, ``tau2``, ``k0``,
``delta``, ``LRT``, ``fsnum``. Trim-and-fill and selection models are coefficient results
(:class:`~alliance_meta.stats.results.CoefResult`). Results based on fewer than 10 effects carry
a ``note`` saying that the power of the method is low (Sterne et al. 2011, BMJ 343:d4002,
doi:10.1136/bmj.d4002); methods that cannot run raise a ValueError that says why.

For dependent effects (a :class:`~alliance_meta.stats.rma_mv.ThreeLevelResult`),
:func:`egger_test` and :func:`pet_peese` fit the three-level meta-regression on the standard
error (or the sampling variance) and test it with CR2 cluster-robust standard errors and
Satterthwaite df (Rodgers & Pustejovsky 2021, Psychol Methods 26:141-160,
doi:10.1037/met0000300), which metafor's ``regtest`` does not offer for ``rma.mv`` models.
"""

from ._common import LOW_POWER_K
from .egger import EggerResult, egger_test
from .fsn import FailSafeNResult, fail_safe_n
from .pet_peese import PetPeeseResult, pet_peese
from .ranktest import RankTestResult, rank_test
from .selmodel import SelectionModelResult, _StepLik, selection_model
from .trimfill import TrimFillResult, trim_and_fill

__all__ = [
    "EggerResult",
    "RankTestResult",
    "TrimFillResult",
    "PetPeeseResult",
    "SelectionModelResult",
    "FailSafeNResult",
    "egger_test",
    "rank_test",
    "trim_and_fill",
    "pet_peese",
    "selection_model",
    "fail_safe_n",
    "LOW_POWER_K",
    "_StepLik",
]
