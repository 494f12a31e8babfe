"""Fixed-point firmware from Python: one import for the emulation, the bit-width scan and fine-tuning.

The work is split by concern (see docs/architecture.md):

* :mod:`aelab.export.fixed`: ``ap_fixed<W,I>`` types (:class:`FixedPoint`), the one
  :class:`Precision` object (data type, weight type, accumulators), weight rounding;
* :mod:`aelab.export.ir`: the network as a typed graph of layers, made once from the fitted model;
* :mod:`aelab.export.emulate`: the bit-accurate PyTorch emulation of hls4ml's arithmetic (its
  docstring states the arithmetic);
* :mod:`aelab.export.scan`: the bit-width scan, da4ml's adder-cost estimate, their table and plot;
* :mod:`aelab.export.qat`: quantisation-aware fine-tuning;
* :mod:`aelab.export.hls`: the hls4ml project and its C emulation.

This module keeps the public names of aelab 0.2 in one place.
"""

from __future__ import annotations

from .emulate import emulate, firmware_scores
from .fixed import ACCUM, OVERFLOW, ROUNDING, FixedPoint, Precision, cast_weights, parse_precision, round_weights
from .ir import graph, network_input
from .qat import finetune
from .scan import adder_cost, bit_scan, format_scan, plot_scan, smallest_width

__all__ = ["FixedPoint", "Precision", "parse_precision", "round_weights", "cast_weights", "fixed_point_network",
           "network_input", "emulate", "firmware_scores", "bit_scan", "smallest_width", "adder_cost", "format_scan",
           "plot_scan", "finetune", "graph", "ROUNDING", "OVERFLOW", "ACCUM"]


def fixed_point_network(est_or_fitted) -> tuple[list[tuple], str]:
    """The network as float64 operations in the tuple form of aelab 0.2, and what it outputs
    ("reconstruction" or "mu"); :func:`aelab.export.ir.graph` gives the typed graph."""
    g = graph(est_or_fitted)
    return g.to_tuples(), g.target
