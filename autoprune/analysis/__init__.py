"""Analysis: layer sensitivity, plots and the HTML report of a run folder."""
