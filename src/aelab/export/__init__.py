"""Leaving Python: the fitted model as a portable file.

* :mod:`aelab.export.onnx`: the whole anomaly score (raw input -> scaler -> network -> the
  score and its fitted statistics) as one ONNX graph, int8 quantisation through ONNX
  Runtime with its cost measured, and ONNX Runtime as a scoring engine; the int8 part is
  :mod:`aelab.export.int8` and sessions and file checks :mod:`aelab.export.runtime` (both
  re-exported by ``aelab.export.onnx``);
* the fixed-point path, one concern a module: :mod:`aelab.export.fixed` (``ap_fixed<W,I>`` types and
  the one :class:`~aelab.export.fixed.Precision` object), :mod:`aelab.export.ir` (the network as a
  typed graph, made once), :mod:`aelab.export.emulate` (bit-accurate emulation), :mod:`aelab.export.scan`
  (bit-width scan, adder cost), :mod:`aelab.export.qat` (fine-tuning); :mod:`aelab.export.quantize`
  gathers their public names;
* :mod:`aelab.export.hls`: hls4ml projects for FPGAs, written from the same graph.

Everything here reads a :class:`~aelab.fitted.Fitted` (or an estimator's ``fitted_``) and
never imports :mod:`aelab.estimators`. The optional packages (extras ``onnx`` and ``hls``)
are imported inside the functions that need them.
"""
