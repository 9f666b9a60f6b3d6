"""The faces: notebook helpers (``workbench``), the papermill pipeline and site
(``pipeline``), and the command line (``cli``)."""
