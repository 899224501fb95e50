"""The report: what the paper may say (``paper_context``, from summary files only) and how
it is written (``paper_format``: Markdown and LaTeX from one template). The figures are
``sdsbench.plots``; both sit above the analysis and import it, never the other way."""
