"""Metrics by family, one module each; :mod:`advgen.evaluate` runs them and gathers the report.

- :mod:`~advgen.metrics.info`: what each number of a report means, its direction and ideal (``METRICS``);
- :mod:`~advgen.metrics.detectors`: detectors by name, fits shared between metrics, classification scores;
- :mod:`~advgen.metrics.realism`: realism AUC (lower, 0.5 ideal) and correlation difference (lower, 0);
- :mod:`~advgen.metrics.fidelity`: per-column KS and TV complements of tables (higher, 1.0 ideal);
- :mod:`~advgen.metrics.utility`: label fidelity and TSTR vs TRTR (higher);
- :mod:`~advgen.metrics.augmentation`: augmentation uplift and the harm it did;
- :mod:`~advgen.metrics.privacy`: distance to the closest training record (memorisation);
- :mod:`~advgen.metrics.validity`: validator pass rate (higher);
- :mod:`~advgen.metrics.evasion`: disguised attack rows against a detector: detection rate, EIR,
  functional changes, validity, L0/L2, queries, transfer, realism AUC;
- :mod:`~advgen.metrics.report`: strict JSON, the headline rows and the terminal tables;
- :mod:`~advgen.metrics.plots` and :mod:`~advgen.metrics.html_report`: figures and one HTML page.

Each metric is a plain function of arrays or DataFrames, documented with its direction and the value an
ideal generator (or attack) gets. Importing this package imports none of its modules, and the modules
import scikit-learn, scipy and matplotlib only when a metric or a plot first needs them.
"""
