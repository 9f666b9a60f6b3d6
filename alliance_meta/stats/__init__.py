"""The statistics floor (numpy, scipy and formulaic only): effect sizes (``escalc``), the
batched estimation engine, univariate models (``rma``), the three-level model (``rma_mv``),
cluster-robust inference (``robust``), publication bias (``bias``), influence and sensitivity
(``influence``) and the multiverse as a table (``multiverse``)."""
