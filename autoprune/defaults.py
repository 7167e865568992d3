"""Defaults shared by the engine and the command line, in a module that imports nothing heavy."""

#: Kept channels are multiples of this unless told otherwise (8 runs well on most hardware).
DEFAULT_ROUND_TO = 8
#: The granularity that physically removes channels (the others are masks).
STRUCTURED = "channel"
#: Best trials re-scored at full fidelity to fix a search's winner.
DEFAULT_TOP_K = 5
#: Fraction of the validation split a search sets aside to judge its winner against the uniform candidate.
DEFAULT_HOLDOUT = 0.3
