"""Results: the typed row, the recorder (the one writer of MLflow and results/), and everything that
reads rows back: tables, statistics, figures, comparisons, reproduction, check."""
