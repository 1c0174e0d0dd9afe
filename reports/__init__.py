"""Report programs: they run the pipeline (train -> export -> golden -> hw -> sim) and the
library's measurements, and write the results into the docs.

``python -m reports.efficiency`` (``make report``): measured efficiency of one network on
the generated core into docs/RESULTS.md (reports.render: markdown; reports.plots: PNGs).
"""
